/**
 * Hostile review of issue 12 (P2, `/.capsync/mux`): while a client address is over its share of
 * unsent bytes (`--max-unsent-bytes-per-address`), full-state answers wait for room
 * (UnsentBudget.hasRoom) and are woken once the address is back within it. The budget keeps one
 * wake per account, and every session of a multiplexed socket shares its socket's account
 * (one SendBuffer), so each waiting session's wake replaced the one before: only the last
 * session to wait was ever answered, the others never synced (until the socket reconnected).
 * Measured: 6 sessions of one 3 MiB document, a 4 MiB share: 5 synced, 1 never (20 s).
 *
 * Now the socket keeps every waiting session's wake (SharedRoom) and registers one with the
 * budget, which wakes them all; each checks again.
 */
import { describe, expect, it } from 'vitest';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';

const MiB = 1024 * 1024;
const DOC_BYTES = 3 * MiB;
const SESSIONS = 6;

describe('sessions of a multiplexed socket that wait for room in the unsent budget are all answered', () => {
  it(`issue-12 review (mux room wake): ${SESSIONS} sessions of a ${DOC_BYTES / MiB} MiB document, a ${(4 * MiB) / MiB} MiB share per address: every session syncs`, async () => {
    await using relay = await startAttackedRelay(['--max-unsent-bytes-per-address', String(4 * MiB)]);
    const writer = await ProtocolClient.synced(`${relay.url}/big`);
    await writer.waitForAck(writer.type('x'.repeat(DOC_BYTES)), 60_000);
    await writer.close();

    const mux = await MuxClient.connect(relay.url);
    await mux.waitHello();
    const sessions = Array.from({ length: SESSIONS }, () => mux.open('big'));
    const synced = await Promise.allSettled(sessions.map((s) => s.waitFor(() => s.textLength === DOC_BYTES || undefined, `session ${s.sid} synced`, 20_000)));
    const done = synced.filter((r) => r.status === 'fulfilled').length;
    console.log(`mux room wake: ${done} of ${SESSIONS} sessions synced`);
    expect(done).toBe(SESSIONS);
    await mux.close();
  });
});
