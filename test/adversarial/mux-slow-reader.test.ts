/**
 * Hostile review of issue 12 (P4, FairSocket): a multiplexed socket whose reader stops reading
 * while its sessions' documents grow. What waits in the relay's FairSocket for its turn counts
 * as unsent bytes (bufferedAmount), so the socket's one SendBuffer still gives up on it (4429)
 * and the relay holds a bounded amount for it; a healthy multiplexed reader of the same
 * documents gets everything and stays connected.
 */
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '@capsync/core';
import { MuxClient } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';

const LIMIT = 4 * 1024 * 1024;
const GRACE_MS = 2000;
const CHUNK = 'x'.repeat(64 * 1024);
const WRITES = 400; // ~26 MiB across two documents

describe('issue-12 review (mux slow reader)', () => {
  let relay: TestRelay;
  afterEach(async () => relay.dispose());

  it('a multiplexed reader that stops reading is closed 4429; a healthy one gets everything', async () => {
    relay = await startRelay({ sendBufferLimit: LIMIT, slowConsumerGraceMs: GRACE_MS, storage: 'memory' });
    const slow = await MuxClient.connect(relay.url);
    const healthy = await MuxClient.connect(relay.url);
    const docs = ['firehose-a', 'firehose-b'];
    await Promise.all(docs.map((d) => slow.synced(d)));
    const readers = await Promise.all(docs.map((d) => healthy.synced(d)));
    const writers = await Promise.all(docs.map((d) => ProtocolClient.synced(relay.docUrl(d))));
    (slow.ws as unknown as { _socket: Socket })._socket.pause();

    try {
      for (let i = 0; i < WRITES; i++) {
        const w = writers[i % 2]!;
        w.doc.getText('t').insert(0, CHUNK);
        if (i % 50 === 49) await Promise.all(writers.map((x) => x.waitForAck(x.seq, 30_000)));
      }
      const each = (WRITES / 2) * CHUNK.length;
      for (const r of readers) await r.waitFor(() => r.textLength === each || healthy.closeInfo !== null || undefined, 'all writes at the healthy reader', 30_000);
      expect(healthy.closeInfo, 'the healthy reader stays connected').toBeNull();
      (slow.ws as unknown as { _socket: Socket })._socket.resume();
      const info = await slow.waitClosed(10_000);
      expect([CloseCode.SlowConsumer, 1006]).toContain(info.code);
    } finally {
      (slow.ws as unknown as { _socket: Socket })._socket.resume();
    }
    expect(healthy.closeInfo).toBeNull();
    for (const w of writers) await w.close();
    await healthy.close();
  });
});
