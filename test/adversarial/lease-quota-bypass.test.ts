/**
 * Regression tests for the hostile review's finding on issue 11, attack 1 (lease cap bypass):
 * `--max-leases-per-identity` counted per identity, and a client without a token `sub` (open
 * relay, or a token without `sub`) is a new identity on every connection or owner key: ten
 * connections got ten times the cap (1,500 one-hour leases for one client address, cap 100).
 *
 * Now the leases of identities without a `sub` are also capped per client address, together
 * (`--max-leases-per-address`), refused `limit-exceeded` like the identity cap and counted in
 * `capsync_limit_refusals_total{limit="max-leases-per-address"}`. A token's `sub` is not
 * counted per address, nor are the requests a peer relay forwards (its address is not its
 * clients'; the forwarding relay counts theirs). Each test runs real relay processes on port 0.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { LockReplyMessage } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst, type AttackedRelay } from '../support/attack.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { RawLocks } from '../support/raw-locks.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'lease-quota-bypass-secret-long-enough-0123';
const PEER_TOKEN = 'lease-quota-bypass-peer-token';
const HOUR_MS = 3_600_000;
const PER_IDENTITY = heavy ? 100 : 20;
const PER_ADDRESS = heavy ? 1000 : 50;
const CONNECTIONS = heavy ? 20 : 10;
const ACQUIRES_PER_CONNECTION = heavy ? 150 : 30;

/**
 * Lock deadline of the attacked relays: every admitted acquire is a SQLite commit, and the
 * heavy variant's thousand of them can take longer than the default 2 s on a loaded machine
 * (those would answer unavailable, and their grants be withdrawn), which is not what is tested.
 */
const LOCK_TIMEOUT = ['--lock-timeout-ms', '30000'];

const ownerKey = () => randomBytes(16).toString('base64url');

/**
 * The attack: `connections` lock connections from this one address, each announcing a fresh
 * owner key (a new identity), each asking for `n` one-hour leases at once.
 */
async function hoard(url: string, prefix: string, connections: number, n: number, token?: string): Promise<{ replies: LockReplyMessage[]; conns: RawLocks[]; grants: Grant[] }> {
  const conns = await Promise.all(Array.from({ length: connections }, () => RawLocks.open(url, { ownerKey: ownerKey(), ...(token ? { token } : {}) })));
  const asked = conns.flatMap((conn, i) => Array.from({ length: n }, (_, j) => ({ conn, key: `${prefix}/${i}/${j}` })));
  const replies = await Promise.all(asked.map(({ conn, key }) => conn.request('acquire', key, 0, HOUR_MS, 0)));
  const grants = asked.flatMap((a, i) => (replies[i]!.code === '' ? [{ ...a, token: replies[i]!.token }] : []));
  return { replies, conns, grants };
}

interface Grant {
  conn: RawLocks;
  key: string;
  token: number;
}

async function metricsOf(relay: AttackedRelay): Promise<string> {
  return (await fetch(`${relay.httpUrl}/metrics`)).text();
}

function refusalsOf(metrics: string, limit: string): number {
  const m = new RegExp(`capsync_limit_refusals_total\\{limit="${limit}"\\} (\\d+)`).exec(metrics);
  return m ? Number(m[1]) : 0;
}

/** Runs the attack on `relay` with a bystander watching; checks the caps held and stored data. */
async function attackAndCheck(relay: AttackedRelay, token?: string): Promise<{ conns: RawLocks[]; grants: Grant[] }> {
  const headers = token ? { headers: { authorization: `Bearer ${token}` } } : {};
  const writer = await ProtocolClient.synced(`${relay.url}/inventory`, headers);
  writer.doc.getText('t').insert(0, 'before the attack');
  await writer.waitForAck(writer.seq);
  await writer.close();
  const rssBefore = await relay.rss();
  const bystander = await startBystander(relay.url, 'bystander', 10_000, headers);

  const { replies, conns, grants } = await hoard(relay.url, 'hog', CONNECTIONS, ACQUIRES_PER_CONNECTION, token);
  const rtts = await bystander.stop();
  const rssGrowth = (await relay.rss()) - rssBefore;
  const granted = replies.filter((r) => r.code === '').length;
  const refused = replies.filter((r) => r.code === 'limit-exceeded');
  const metrics = await metricsOf(relay);
  const byAddress = refusalsOf(metrics, 'max-leases-per-address');
  const byIdentity = refusalsOf(metrics, 'max-leases-per-identity');
  console.log(
    `[lease-quota-bypass] ${CONNECTIONS} connections x ${ACQUIRES_PER_CONNECTION} one-hour acquires from one address (fresh owner keys${token ? ', sub-less token' : ''}): ` +
      `${granted} granted (caps ${PER_IDENTITY}/identity, ${PER_ADDRESS}/address), refused ${byAddress} by address, ${byIdentity} by identity; ` +
      `relay RSS +${(rssGrowth / 1e6).toFixed(1)} MB; bystander worst round trip ${worst(rtts).toFixed(0)} ms over ${rtts.length} pings`,
  );
  // Before: every connection got the identity cap (10 x 20 = 200 here, 1,500 in the review).
  expect(granted).toBe(PER_ADDRESS);
  expect(refused).toHaveLength(replies.length - PER_ADDRESS);
  expect(refused.every((r) => /^max-leases-per-(address|identity) \(\d+\) reached/.test(r.message))).toBe(true);
  expect(byAddress).toBeGreaterThan(0);
  expect(byAddress + byIdentity).toBe(refused.length);
  expect(rssGrowth).toBeLessThan(64 * 1024 * 1024);
  expect(worst(rtts)).toBeLessThan(2_000);

  const reader = await ProtocolClient.synced(`${relay.url}/inventory`, headers);
  expect(reader.text).toBe('before the attack');
  await reader.close();
  return { conns, grants };
}

describe('issue-11 review: the lease cap bypassed with connections or fresh owner keys', () => {
  it(`issue-11 attack 1 (review): ${CONNECTIONS} connections with fresh owner keys on an open relay get --max-leases-per-address (${PER_ADDRESS}) leases together, not ${CONNECTIONS} x --max-leases-per-identity; a release frees a slot; others stay served`, async () => {
    await using relay = await startAttackedRelay([...LOCK_TIMEOUT, '--max-leases-per-identity', String(PER_IDENTITY), '--max-leases-per-address', String(PER_ADDRESS)]);
    const { conns, grants } = await attackAndCheck(relay);

    // A new identity from this address is refused by the address cap, even for a short lease.
    const fresh = await RawLocks.open(relay.url, { ownerKey: ownerKey() });
    const refusal = await fresh.request('acquire', 'fresh/1', 0, 1_000, 0);
    expect(refusal.code).toBe('limit-exceeded');
    expect(refusal.message).toMatch(/^max-leases-per-address/);
    // Releasing one of the hoarded leases frees one slot for the address, whoever uses it next.
    const [held] = grants;
    expect(await held!.conn.code('release', held!.key, held!.token)).toBe('ok');
    expect(await fresh.code('acquire', 'fresh/1', 0, 1_000, 0)).toBe('ok');
    expect(await fresh.code('acquire', 'fresh/2', 0, 1_000, 0)).toBe('limit-exceeded');
    for (const c of [...conns, fresh]) c.close();
  }, 60_000);

  it(`issue-11 attack 1 (review): on a relay with auth, ${CONNECTIONS} connections of one token without sub are capped per address too; a user with a sub from the same address keeps her own quota`, async () => {
    await using relay = await startAttackedRelay([...LOCK_TIMEOUT, '--auth-secret', SECRET, '--max-leases-per-identity', String(PER_IDENTITY), '--max-leases-per-address', String(PER_ADDRESS)]);
    const subless = await mintToken(SECRET, { lifetimeS: 3600 });
    const { conns } = await attackAndCheck(relay, subless);
    // Alice's leases count against alice (her sub), not against the address the attacker filled.
    const alice = await RawLocks.open(relay.url, { token: await mintToken(SECRET, { sub: 'alice', lifetimeS: 3600 }) });
    const aliceReplies = await Promise.all(Array.from({ length: PER_IDENTITY + 1 }, (_, i) => alice.request('acquire', `alice/${i}`, 0, HOUR_MS, 0)));
    expect(aliceReplies.filter((r) => r.code === '')).toHaveLength(PER_IDENTITY);
    expect(aliceReplies.filter((r) => r.code !== '').map((r) => r.message)).toEqual([expect.stringMatching(/^max-leases-per-identity/)]);
    for (const c of [...conns, alice]) c.close();
  }, 60_000);

  it.each([
    { mesh: 'open relays with --peer-token', auth: ['--peer-token', PEER_TOKEN] },
    { mesh: 'relays with --auth-secret (a sub-less client token)', auth: ['--auth-secret', SECRET] },
  ])('issue-11 attack 1 (review): through --lock-authority forwarding ($mesh) the forwarding relay caps its clients per address, and the authority does not count the forwarding relay as one address', async ({ auth }) => {
    // The authority's per-address cap (5) is below what the forwarder's clients may hold (10):
    // were the forwarded requests counted against the forwarder's address, 5 would be granted.
    await using authority = await startAttackedRelay([...auth, '--relay-id', 'A', '--max-leases-per-address', '5']);
    await using forwarder = await startAttackedRelay([...auth, '--relay-id', 'F', '--lock-authority', authority.url, '--max-leases-per-address', '10']);
    const subless = auth[0] === '--auth-secret' ? await mintToken(SECRET, { lifetimeS: 3600 }) : undefined;
    // Wait for the forwarding link: a probe answers something else than unavailable.
    const probe = await RawLocks.open(forwarder.url, { ...(subless ? { token: subless } : {}), ownerKey: ownerKey() });
    const until = performance.now() + 10_000;
    let first = await probe.request('acquire', 'probe', 0, 1_000, 0);
    while (first.code === 'unavailable' && performance.now() < until) first = await probe.request('acquire', 'probe', 0, 1_000, 0);
    expect(first.code).toBe('');
    expect(await probe.code('release', 'probe', first.token)).toBe('ok');

    const { replies, conns } = await hoard(forwarder.url, 'fwd', 4, 5, subless);
    const granted = replies.filter((r) => r.code === '').length;
    console.log(`[lease-quota-bypass] forwarded: 4 connections x 5 acquires through F (cap 10/address; authority cap 5/address): ${granted} granted`);
    expect(granted).toBe(10);
    expect(replies.filter((r) => r.code !== '').every((r) => r.code === 'limit-exceeded' && /^max-leases-per-address/.test(r.message))).toBe(true);
    expect(refusalsOf(await metricsOf(forwarder), 'max-leases-per-address')).toBe(10);
    expect(refusalsOf(await metricsOf(authority), 'max-leases-per-address')).toBe(0);
    for (const c of [...conns, probe]) c.close();
  }, 60_000);
});
