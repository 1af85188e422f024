/**
 * Hostile review of issue 12 (P2, `/.capsync/mux`): input received while a document loads is
 * queued by its session, up to 2 x `--max-message-bytes` (what one plain connection may queue).
 * A multiplexed socket has up to `--max-sessions-per-socket` sessions, each with that queue, so
 * one socket could make the relay hold 2000 x 2 x max-message-bytes (64 GB at the defaults) while
 * its documents load: a plain connection holds one queue.
 *
 * Now the socket's sessions share one plain connection's queue bound: input past it closes the
 * session it was for (4429 slow-consumer, as a plain connection's overflow), the socket and every
 * other client carry on. Slow loads are made real by another process holding SQLite's write lock
 * (as a backup or a slow disk would): the relay's storage worker waits on it in a commit, so every
 * load queued behind that (and every load queued behind it) waits until the lock goes.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CloseCode } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { MuxClient } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';

const MiB = 1024 * 1024;
const MAX_MESSAGE = 256 * 1024;
/** Sessions of the attacking socket, each on a document that loads slowly. */
const N = heavy ? 600 : 200; // the attack must finish within the relay's 5 s SQLite busy timeout
const BYSTANDER_MAX_MS = 1_000;

describe('a multiplexed socket queues at most one plain connection of input while its documents load', () => {
  it(`issue-12 review (mux queued input): ${N} sessions of one socket on slow-loading documents each send 2 x max-message-bytes; the socket is held to one connection's queue`, async () => {
    await using relay = await startAttackedRelay(['--max-message-bytes', String(MAX_MESSAGE), '--max-sessions-per-socket', String(N + 10)]);
    const bystander = await startBystander(relay.url);
    const writer = await ProtocolClient.synced(`${relay.url}/writer`);
    const mux = await MuxClient.connect(relay.url);
    await mux.waitHello();
    // Another process takes SQLite's write lock; the relay's next commit waits for it (its busy
    // timeout, 5 s) in the storage worker, and every load queued behind that commit waits too.
    const holder = new Database(path.join(relay.dataDir, 'capsync.db'));
    holder.exec('BEGIN IMMEDIATE');
    const lockedAt = performance.now();
    writer.type('stalls the storage worker');
    // The relay took the update (its commit is queued) before any load of the attack.
    writer.sendMessage({ type: 'ping', id: 1 });
    await writer.waitFor(() => writer.received.some((m) => m.type === 'pong'), 'pong');
    try {
      const before = await relay.rss();
      const body = new Uint8Array(MAX_MESSAGE - 16).fill(0x7f);
      const sessions = [];
      for (let i = 0; i < N; i++) {
        const s = mux.open(`slow-${i}`, { sync: false });
        sessions.push(s);
        s.sendRaw(body);
        s.sendRaw(body);
        // Paced by the socket, so the client's own buffer does not hold the whole attack.
        while (mux.ws.bufferedAmount > 8 * MiB) await new Promise((r) => setTimeout(r, 5));
      }
      // The relay handled every frame above once it answers this ping on the control session.
      mux.sendControl({ type: 'ping', id: 1 });
      await mux.waitFor(() => mux.control.some((m) => m.type === 'pong' && m.id === 1), 'pong', 30_000);
      // The attack is real only if the document is still loading: no session was answered yet
      // (the relay's busy timeout, 5 s, had not run out).
      expect(performance.now() - lockedAt).toBeLessThan(5_000);
      expect(sessions.every((s) => s.received.length === 0 || s.closeInfo !== null)).toBe(true);
      const grown = (await relay.rss()) - before;
      const overflowed = sessions.filter((s) => s.closeInfo?.code === CloseCode.SlowConsumer).length;
      console.log(`mux queued input: ${N} sessions x ${(2 * body.byteLength) / MiB} MiB sent; relay RSS +${(grown / MiB).toFixed(0)} MiB; ${overflowed} sessions closed 4429; ${(performance.now() - lockedAt).toFixed(0)} ms into the lock`);
      // Holding every session's queue is the whole attack (100 MiB light: +115 MiB measured before
      // the fix); now one plain connection's queue (512 KiB) plus received frames not yet
      // collected (+42 MiB measured).
      expect(grown).toBeLessThan((N * 2 * body.byteLength) * 0.7);
      expect(overflowed).toBeGreaterThanOrEqual(N - 2);
      expect(mux.isOpen).toBe(true);
    } finally {
      holder.exec('COMMIT');
      holder.close();
    }
    // The document loads; a session opened now on the same socket is served.
    const late = await mux.synced('slow');
    expect(late.permission).toBe('write');
    expect(worst(await bystander.stop())).toBeLessThan(BYSTANDER_MAX_MS);
    await writer.close();
    await mux.close();
  });
});
