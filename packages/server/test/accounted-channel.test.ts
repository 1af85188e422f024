import { describe, expect, it } from 'vitest';
import { WebSocketChannel, type CapsyncError, type Channel } from '@capsync/core';
import { channelConformance } from '@capsync/core/conformance';
import { AccountedChannel, type RelaySocket } from '../src/relay/accounted-channel.js';
import { wsSocketPair } from './support/ws-pair.js';

const OPTIONS = { sendBufferLimit: 1 << 20, slowConsumerGraceMs: 1000 };

/** A served ws socket as the relay wires it (AccountedChannel fed by the socket's events), and a client channel. */
async function servedPair(): Promise<[Channel, Channel]> {
  const { client, served: ws } = await wsSocketPair();
  // The conformance stream sends 50 MB at once: a limit above it (the accounting is tested below).
  const served = new AccountedChannel(ws, { sendBufferLimit: 1 << 30, slowConsumerGraceMs: 1000 });
  ws.on('message', (data: Buffer, isBinary: boolean) => served.received(data, isBinary));
  ws.on('close', (code: number, reason: Buffer) => served.transportClosed(code, reason.toString()));
  return [served, new WebSocketChannel(client, { writeCallbacks: true })];
}

describe('AccountedChannel (a served ws socket): Channel conformance', () => {
  for (const c of channelConformance) it(c.name, () => c.run({ pair: servedPair }));
});

/** A socket whose buffer the test fills. */
function fakeSocket(): RelaySocket & { buffered: number; sent: number; closed: number[] } {
  return {
    buffered: 0,
    sent: 0,
    closed: [],
    get bufferedAmount() {
      return this.buffered;
    },
    send() {
      this.sent++;
    },
    close(code: number) {
      this.closed.push(code);
    },
    terminate() {},
  };
}

describe('AccountedChannel', () => {
  it('reports a text frame as a text-frame error, never as a message', () => {
    const channel = new AccountedChannel(fakeSocket(), OPTIONS);
    const errors: CapsyncError[] = [];
    const messages: Uint8Array[] = [];
    channel.attach({ message: (m) => messages.push(m), close: () => {}, error: (e) => errors.push(e) });
    channel.received(new Uint8Array([1]), false);
    channel.received(new Uint8Array([2]), true);
    expect(errors.map((e) => e.code)).toEqual(['text-frame']);
    expect(messages).toHaveLength(1);
  });

  it('reports a consumer over four times its send buffer limit as slow-consumer, and sends nothing more', () => {
    const socket = fakeSocket();
    const channel = new AccountedChannel(socket, OPTIONS);
    const errors: CapsyncError[] = [];
    channel.attach({ message: () => {}, close: () => {}, error: (e) => errors.push(e) });
    channel.send(new Uint8Array(10));
    socket.buffered = 4 * OPTIONS.sendBufferLimit + 1;
    channel.send(new Uint8Array(10));
    expect(errors.map((e) => e.code)).toEqual(['slow-consumer']);
    channel.send(new Uint8Array(10));
    expect(socket.sent).toBe(2);
  });
});
