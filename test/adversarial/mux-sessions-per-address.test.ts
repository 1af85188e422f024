/**
 * Hostile review of issue 12 (P2, `/.capsync/mux`): one client address may hold
 * `--max-connections-per-address` plain connections (one document each), but each of its
 * multiplexed sockets may hold `--max-sessions-per-socket` sessions (documents): 1000 sockets x
 * 2000 sessions = 2 million documents loaded for one address at the defaults, each costing the
 * relay what a plain connection's document costs.
 *
 * Now the sessions of one address's multiplexed sockets are capped together
 * (`--max-sessions-per-address`): an open past it is refused alone (4413 `limit-exceeded`,
 * `capsync_limit_refusals_total{limit="max-sessions-per-address"}`), the sockets and their
 * other sessions carry on, a session closed frees its place, and other clients are served.
 */
import { describe, expect, it } from 'vitest';
import { CloseCode } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { MuxClient, type MuxDocSession } from '../support/mux-client.js';
import { metricValue } from '../support/relay-observe.js';

/** Sockets of the attacking address, and sessions each opens (distinct documents). */
const SOCKETS = heavy ? 10 : 3;
const PER_SOCKET = heavy ? 2000 : 300;
/** The address's cap the relay runs with. */
const CAP = heavy ? 2000 : 400;
const BYSTANDER_MAX_MS = 1_000;

/** Waits until `s` is accepted (its permission) or refused (its close). */
function decided(s: MuxDocSession): Promise<unknown> {
  return s.waitFor(() => s.permission ?? s.closeInfo ?? undefined, `the open of ${s.name}`, 60_000);
}

describe('the sessions of one address are capped across its multiplexed sockets', () => {
  it(`issue-12 review (mux sessions per address): ${SOCKETS} sockets x ${PER_SOCKET} documents from one address; past --max-sessions-per-address ${CAP} opens are refused alone`, async () => {
    await using relay = await startAttackedRelay(['--max-sessions-per-socket', String(Math.max(PER_SOCKET, CAP)), '--max-sessions-per-address', String(CAP), '--max-refused-opens-per-socket', String(SOCKETS * PER_SOCKET)]);
    const bystander = await startBystander(relay.url);
    const before = await relay.rss();
    const sockets = await Promise.all(Array.from({ length: SOCKETS }, () => MuxClient.connect(relay.url)));
    const sessions: MuxDocSession[] = [];
    for (const [k, mux] of sockets.entries()) {
      await mux.waitHello();
      for (let i = 0; i < PER_SOCKET; i++) sessions.push(mux.open(`d-${k}-${i}`, { sync: false }));
    }
    await Promise.all(sessions.map(decided));
    const grown = (await relay.rss()) - before;
    const accepted = sessions.filter((s) => s.permission !== null && s.closeInfo === null).length;
    const refused = sessions.filter((s) => s.closeInfo?.code === CloseCode.LimitExceeded).length;
    console.log(`mux sessions per address: ${sessions.length} opened from one address, ${accepted} accepted, ${refused} refused 4413; relay RSS +${(grown / 1024 / 1024).toFixed(0)} MiB`);
    expect(accepted).toBe(CAP);
    expect(refused).toBe(SOCKETS * PER_SOCKET - CAP);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-sessions-per-address' })).toBe(refused);
    expect(sockets.every((m) => m.isOpen)).toBe(true);

    // A session closed frees its place: the next open is accepted.
    const open = sessions.find((s) => s.permission !== null && s.closeInfo === null)!;
    await open.close();
    const again = sockets[0]!.open('again', { sync: false });
    expect(await again.waitOpened()).toBe('write');

    // Closed sockets give back every place: a new socket of the address is served up to the cap.
    await Promise.all(sockets.map((m) => m.close()));
    const next = await MuxClient.connect(relay.url);
    await next.waitHello();
    const reopened = Array.from({ length: CAP }, (_, i) => next.open(`d-0-${i}`, { sync: false }));
    await Promise.all(reopened.map(decided));
    expect(reopened.filter((s) => s.permission !== null && s.closeInfo === null).length).toBe(CAP);
    expect(worst(await bystander.stop())).toBeLessThan(BYSTANDER_MAX_MS);
    await next.close();
  });
});
