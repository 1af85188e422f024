import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '@capsync/core';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { waitForEvent } from '../support/wait.js';

// Bursts may briefly push a healthy reader's send buffer over the limit; only a reader that
// stays over it for the grace period (or passes 4x the limit) is closed.
const LIMIT = 4 * 1024 * 1024;
const GRACE_MS = 2000;
const CHUNK = 'x'.repeat(64 * 1024);
const WRITES = 400; // ~26 MiB: more than loopback socket buffers and the limit absorb

describe('a slow consumer is bounded and never slows the others', () => {
  let relay: TestRelay;
  afterEach(async () => relay.dispose());

  it('closes a reader that stopped reading, while a healthy reader gets everything', async () => {
    relay = await startRelay({ sendBufferLimit: LIMIT, slowConsumerGraceMs: GRACE_MS, storage: 'memory' });
    const closes: { code: number; reason: string }[] = [];
    relay.relay.on('connection-closed', (e) => closes.push(e));
    const slow = await ProtocolClient.synced(relay.docUrl('firehose'));
    const healthy = await ProtocolClient.synced(relay.docUrl('firehose'));
    const writer = await ProtocolClient.synced(relay.docUrl('firehose'));
    // The slow client's process stops reading its socket: the relay's send buffer grows.
    const socket = (slow.ws as unknown as { _socket: Socket })._socket;
    socket.pause();

    // Prepended, not appended: appending 64 KiB chunks makes Yjs merge them into one item whose
    // string V8 re-flattens on every append (400 appends: ~16 s of CPU in this process alone).
    // In bursts of 25 (1.6 MiB), each received by the healthy reader before the next: the relay,
    // writer and readers share this event loop, so on a loaded machine one large burst can sit in
    // the healthy reader's send buffer over the limit for the whole grace period (CI once saw it
    // closed as a slow consumer too). Paced this way its buffer never reaches the limit, while the
    // paused reader's grows by every burst.
    const text = writer.doc.getText('t');
    for (let i = 0; i < WRITES; i++) {
      text.insert(0, CHUNK);
      if (i % 25 === 24) {
        const sent = (i + 1) * CHUNK.length;
        await healthy.waitFor(
          () => healthy.textLength >= sent || healthy.closeInfo !== null || undefined,
          `burst ${(i + 1) / 25} at the healthy reader`,
          30_000,
        );
      }
    }
    const expectedLength = WRITES * CHUNK.length;
    await healthy.waitFor(
      () => healthy.textLength === expectedLength || healthy.closeInfo !== null || undefined,
      'all writes at the healthy reader',
      30_000,
    );
    expect(healthy.closeInfo, 'the healthy reader stays connected').toBeNull();
    await writer.waitForAck(writer.seq, 30_000);

    await waitForEvent(relay.relay, 'connection-closed', () => closes.length > 0 || undefined, 'the slow consumer to be closed', 10_000);
    expect(closes, `closed: ${JSON.stringify(closes)}`).toHaveLength(1);
    expect(closes[0]!.code).toBe(CloseCode.SlowConsumer);
    expect(closes[0]!.reason).toMatch(/^slow-consumer: send buffer over/);
    socket.resume();
    const info = await slow.waitClosed(10_000);
    // The close frame may not get through a full buffer; then the relay drops the socket.
    expect([CloseCode.SlowConsumer, 1006]).toContain(info.code);
    expect(healthy.closeInfo).toBeNull();
    await healthy.close();
    await writer.close();
  });
});
