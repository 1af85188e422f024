import { describe, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { WebSocketChannel, type Channel } from '@capsync/core';
import { channelConformance } from '@capsync/core/conformance';

/** A real ws server on port 0 and a client socket to it, both wrapped as channels. */
async function socketPair(): Promise<[Channel, Channel]> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const port = (wss.address() as { port: number }).port;
  const accepted = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${port}`);
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve());
    client.once('error', reject);
  });
  const server = await accepted;
  // The listening socket is not needed once the pair is connected.
  wss.close();
  return [new WebSocketChannel(client, { writeCallbacks: true }), new WebSocketChannel(server, { writeCallbacks: true })];
}

describe('WebSocket channel (ws, real sockets on loopback): Channel conformance', () => {
  for (const c of channelConformance) it(c.name, () => c.run({ pair: socketPair }));
});
