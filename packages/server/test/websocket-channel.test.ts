import { describe, it } from 'vitest';
import { WebSocketChannel, type Channel } from '@capsync/core';
import { channelConformance } from '@capsync/core/conformance';
import { wsSocketPair } from './support/ws-pair.js';

/** A real ws server on port 0 and a client socket to it, both wrapped as channels. */
async function socketPair(): Promise<[Channel, Channel]> {
  const { client, served } = await wsSocketPair();
  return [new WebSocketChannel(client, { writeCallbacks: true }), new WebSocketChannel(served, { writeCallbacks: true })];
}

describe('WebSocket channel (ws, real sockets on loopback): Channel conformance', () => {
  for (const c of channelConformance) it(c.name, () => c.run({ pair: socketPair }));
});
