import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '@capsync/core';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';

const LIMIT = 256 * 1024;
const CHUNK = 'x'.repeat(64 * 1024);
const WRITES = 300; // ~19 MiB: more than loopback socket buffers absorb

describe('a slow consumer is bounded and never slows the others', () => {
  let relay: TestRelay;
  afterEach(async () => relay.dispose());

  it('closes a reader that stopped reading, while a healthy reader gets everything', async () => {
    relay = await startRelay({ sendBufferLimit: LIMIT, storage: 'memory' });
    const slow = await ProtocolClient.synced(relay.docUrl('firehose'));
    const healthy = await ProtocolClient.synced(relay.docUrl('firehose'));
    const writer = await ProtocolClient.synced(relay.docUrl('firehose'));
    // The slow client's process stops reading its socket: the relay's send buffer grows.
    const socket = (slow.ws as unknown as { _socket: Socket })._socket;
    socket.pause();

    for (let i = 0; i < WRITES; i++) writer.type(CHUNK);
    const expectedLength = WRITES * CHUNK.length;
    await healthy.waitFor(() => healthy.text.length === expectedLength || undefined, 'all writes at the healthy reader', 30_000);
    await writer.waitForAck(writer.seq, 30_000);

    const closes = await relay.relay.metrics.closes.get();
    const slowCloses = closes.values.find((v) => v.labels['code'] === 'SlowConsumer')?.value ?? 0;
    expect(slowCloses).toBe(1);
    socket.resume();
    const info = await slow.waitClosed(10_000);
    // The close frame may not get through a full buffer; then the relay drops the socket.
    expect([CloseCode.SlowConsumer, 1006]).toContain(info.code);
    expect(healthy.closeInfo).toBeNull();
    await healthy.close();
    await writer.close();
  });
});
