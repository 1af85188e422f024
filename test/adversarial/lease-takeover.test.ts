/**
 * Regression tests for issue 11, attack 1 (lease takeover): renew, release, check and the
 * fenced write behind cp-set accepted anyone who presented a lease's token, tokens are small
 * sequential integers, and the busy refusal printed the holder's token ("held with token 1").
 * A second user renewed another user's lease to an hour, released it, took the lock and wrote
 * -999 into her fenced value.
 *
 * Now a lease belongs to the identity that acquired it (the token's `sub`; on an open relay the
 * client's owner key, else the connection): anyone else is refused `not-owner`, no message
 * names another holder's token, and leases per identity are capped. Each test runs real relay
 * processes (port 0, SQLite), through `--lock-authority` forwarding and etcd too.
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type CapsyncClient, type ClientOptions, type Lease, type WebSocketConstructor } from '@capsync/client';
import { OWNER_KEY_PREFIX, PROTOCOL_VERSION, encodeMessage } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst, type AttackedRelay } from '../support/attack.js';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { codeOf } from '../support/error-code.js';
import { describeEtcd } from '../support/describe-etcd.js';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';
import { RawLocks, hello, protocols } from '../support/raw-locks.js';

const SECRET = 'lease-takeover-secret-that-is-long-enough';
const HOUR_MS = 3_600_000;

/** A token for `sub`, with `exp` (one hour) and write access to everything (locks included). */
function mint(sub: string): Promise<string> {
  return mintToken(SECRET, { sub, lifetimeS: 3600 });
}

const ownerKey = () => randomBytes(16).toString('base64url');

const clients: CapsyncClient[] = [];
function client(url: string, options: Partial<ClientOptions> = {}): CapsyncClient {
  const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS, lockTimeoutMs: 3_000, ...options });
  clients.push(c);
  return c;
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

/** A fenced write spoken by hand on a fresh document connection; resolves with the code and message. */
async function rawCpSet(url: string, doc: string, key: string, token: number, value: unknown, options: { token?: string; ownerKey?: string } = {}): Promise<{ code: string; message: string }> {
  const c = await ProtocolClient.connect(`${url}/${doc}`, { hello: false, protocols: protocols(options.token) });
  try {
    c.sendMessage(hello(options.ownerKey));
    c.sendMessage({ type: 'cp-set', id: 7, key, token, json: JSON.stringify(value) });
    const reply = await c.waitFor(() => c.received.find((m) => m.type === 'cp-reply'), 'the cp-reply');
    return reply.type === 'cp-reply' ? { code: reply.code || 'ok', message: reply.message } : { code: 'none', message: '' };
  } finally {
    await c.close();
  }
}

/** Retries `fn` while it answers unavailable (a forwarding link still coming up). */
async function whenReachable<T>(fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if ((await codeOf(Promise.reject(err))) !== 'unavailable' || performance.now() > until) throw err;
    }
  }
}

/** No message may name `token` (the victim's): a bare number in any refusal text. */
function expectNoToken(messages: string[], token: number): void {
  expect(messages.length).toBeGreaterThan(0);
  for (const m of messages) expect(m, m).not.toMatch(new RegExp(`(^|[^0-9])${token}([^0-9]|$)`));
}

/**
 * Alice takes the lock (with a token above 1, so leaked tokens are told from other numbers)
 * and writes her fenced value through the real client.
 */
async function aliceHolds(url: string, key: string, options: Partial<ClientOptions>): Promise<{ lease: Lease; alice: CapsyncClient }> {
  const alice = client(url, options);
  for (let i = 0; i < 3; i++) await (await whenReachable(() => alice.locks.acquire(key, { ttlMs: 5_000 }))).release();
  const lease = await alice.locks.acquire(key, { ttlMs: 20_000 });
  const h = await alice.open('shop');
  await h.cp.set(key, 10, lease);
  return { lease, alice };
}

/** Bob (another identity) tries everything with Alice's token; every attempt is refused not-owner. */
async function bobTriesTakeover(bob: RawLocks, cpSet: (token: number) => Promise<{ code: string; message: string }>, key: string, token: number, options: { renewRefusal?: string } = {}): Promise<string[]> {
  const renew = await bob.request('renew', key, token, HOUR_MS);
  expect(renew.code).toBe(options.renewRefusal ?? 'not-owner');
  expect(await bob.code('release', key, token)).toBe('not-owner');
  expect(await bob.code('check', key, token)).toBe('not-owner');
  expect(await bob.code('acquire', key, 0, 5_000, 0)).toBe('lock-timeout');
  const write = await cpSet(token);
  expect(write.code).toBe('not-owner');
  return [...bob.messages, write.message];
}

/** Alice's value and lease are intact: she reads 10, renews, and writes under her token. */
async function expectIntact(alice: CapsyncClient, lease: Lease, key: string): Promise<void> {
  const h = await alice.open('shop');
  expect(h.cp.entry(key)).toMatchObject({ value: 10, token: lease.token });
  expect(lease.valid).toBe(true);
  await lease.renew();
  await h.cp.set(key, 9, lease);
  expect(h.cp.get(key)).toBe(9);
}

describe('issue-11 attack 1: lease takeover', () => {
  it('issue-11 attack 1: with auth, another user cannot renew (to an hour), release, check or cp-set a lease with its token; no message names it; the owner renews and releases from a second connection', async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const key = 'stock/widget';
    const [aliceToken, bobToken] = await Promise.all([mint('alice'), mint('bob')]);
    const { lease, alice } = await aliceHolds(relay.url, key, { token: aliceToken });
    expect(lease.token).toBeGreaterThan(1);

    const bob = await RawLocks.open(relay.url, { token: bobToken });
    const messages = await bobTriesTakeover(bob, (t) => rawCpSet(relay.url, 'shop', key, t, -999, { token: bobToken }), key, lease.token);
    expectNoToken(messages, lease.token);
    await expectIntact(alice, lease, key);

    // Same user, another connection (a second tab, or a reconnect): still hers.
    const aliceElsewhere = await RawLocks.open(relay.url, { token: aliceToken });
    expect(await aliceElsewhere.code('check', key, lease.token)).toBe('ok');
    expect(await aliceElsewhere.code('renew', key, lease.token, 10_000)).toBe('ok');
    expect(await aliceElsewhere.code('release', key, lease.token)).toBe('ok');
    // Released by its owner: Bob may take it now, with a newer token.
    const bobs = await bob.request('acquire', key, 0, 5_000, 0);
    expect(bobs.code).toBe('');
    expect(bobs.token).toBeGreaterThan(lease.token);
    bob.close();
    aliceElsewhere.close();

    const metrics = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    for (const op of ['renew', 'release', 'check']) expect(metrics).toMatch(new RegExp(`capsync_lock_refusals_total\\{op="${op}",reason="not-owner"\\} 1\\b`));
  });

  it('issue-11 attack 1: on an open relay, clients with different owner keys (or none) cannot touch each other\'s leases; the owner key survives a reconnect', async () => {
    await using relay = await startAttackedRelay([]);
    const key = 'stock/gadget';
    const aliceKey = ownerKey();
    const { lease, alice } = await aliceHolds(relay.url, key, { ownerKey: aliceKey });

    const bobKey = ownerKey();
    const bob = await RawLocks.open(relay.url, { ownerKey: bobKey });
    const messages = await bobTriesTakeover(bob, (t) => rawCpSet(relay.url, 'shop', key, t, -999, { ownerKey: bobKey }), key, lease.token);
    const anonymous = await RawLocks.open(relay.url);
    messages.push(...(await bobTriesTakeover(anonymous, (t) => rawCpSet(relay.url, 'shop', key, t, -999), key, lease.token)));
    expectNoToken(messages, lease.token);
    await expectIntact(alice, lease, key);

    // Alice's key on a new connection (her client reconnecting) is still Alice.
    const aliceAgain = await RawLocks.open(relay.url, { ownerKey: aliceKey });
    expect(await aliceAgain.code('renew', key, lease.token, 10_000)).toBe('ok');
    expect((await rawCpSet(relay.url, 'shop', key, lease.token, 8, { ownerKey: aliceKey })).code).toBe('ok');
    // A raw connection without a key owns what it acquired, on that connection only.
    const mine = await anonymous.request('acquire', 'stock/anon', 0, 10_000, 0);
    expect(mine.code).toBe('');
    const later = await RawLocks.open(relay.url);
    expect(await later.code('renew', 'stock/anon', mine.token, 10_000)).toBe('not-owner');
    expect(await anonymous.code('release', 'stock/anon', mine.token)).toBe('ok');
    // A malformed key is refused (and never echoed).
    const bad = new WebSocket(`${relay.url}/.capsync/locks`, ['capsync']);
    await new Promise((r) => bad.once('open', r));
    bad.send(encodeMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: [`${OWNER_KEY_PREFIX}short`] }));
    const [code, reason] = await new Promise<[number, string]>((r) => bad.once('close', (c: number, why: Buffer) => r([c, why.toString()])));
    expect(code).toBe(4400);
    expect(reason).not.toContain('short');
    for (const c of [bob, anonymous, aliceAgain, later]) c.close();
  });

  it(`issue-11 attack 1: one connection asking for ${heavy ? '5,000' : '500'} one-hour leases gets --max-leases-per-identity (20), then limit-exceeded; releasing frees quota; others stay served`, async () => {
    await using relay = await startAttackedRelay(['--max-leases-per-identity', '20']);
    // Stored data before the attack, read back after it.
    const writer = await ProtocolClient.synced(`${relay.url}/inventory`);
    writer.doc.getText('t').insert(0, 'before the attack');
    await writer.waitForAck(writer.seq);
    await writer.close();
    const rssBefore = await relay.rss();
    const bystander = await startBystander(relay.url);
    const attacker = await RawLocks.open(relay.url);
    const n = heavy ? 5_000 : 500;
    const replies = await Promise.all(Array.from({ length: n }, (_, i) => attacker.request('acquire', `hog/${i}`, 0, HOUR_MS, 0)));
    const rtts = await bystander.stop();
    const rssGrowth = (await relay.rss()) - rssBefore;
    const granted = replies.filter((r) => r.code === '');
    const refused = replies.filter((r) => r.code === 'limit-exceeded');
    console.log(`[lease-takeover] ${n} acquires: ${granted.length} granted, ${refused.length} limit-exceeded; relay RSS +${(rssGrowth / 1e6).toFixed(1)} MB; bystander worst round trip ${worst(rtts).toFixed(0)} ms over ${rtts.length} pings`);
    expect(granted).toHaveLength(20);
    expect(refused).toHaveLength(n - 20);
    expect(refused[0]!.message).toMatch(/^max-leases-per-identity/);
    expect(rssGrowth).toBeLessThan(64 * 1024 * 1024);
    expect(worst(rtts)).toBeLessThan(2_000);

    // Releasing one frees one slot, for this identity; another identity has its own quota.
    expect(await attacker.code('acquire', 'hog/more', 0, HOUR_MS, 0)).toBe('limit-exceeded');
    expect(await attacker.code('release', 'hog/0', granted[0]!.token)).toBe('ok');
    expect(await attacker.code('acquire', 'hog/more', 0, HOUR_MS, 0)).toBe('ok');
    const other = await RawLocks.open(relay.url);
    expect(await other.code('acquire', 'hog/other', 0, 1_000, 0)).toBe('ok');
    attacker.close();
    other.close();

    const metrics = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`capsync_limit_refusals_total\\{limit="max-leases-per-identity"\\} ${n - 20 + 1}\\b`));
    expect(metrics).toMatch(new RegExp(`capsync_lock_refusals_total\\{op="acquire",reason="limit-exceeded"\\} ${n - 20 + 1}\\b`));
    const reader = await ProtocolClient.synced(`${relay.url}/inventory`);
    expect(reader.text).toBe('before the attack');
    await reader.close();
  }, 60_000);

  it('issue-11 attack 1: through --lock-authority forwarding, another user cannot renew, release, check or cp-set a lease on either relay', async () => {
    await using authority = await startAttackedRelay(['--auth-secret', SECRET, '--relay-id', 'A']);
    await using forwarder = await startAttackedRelay(['--auth-secret', SECRET, '--relay-id', 'F', '--lock-authority', authority.url]);
    const key = 'stock/forwarded';
    const [aliceToken, bobToken] = await Promise.all([mint('alice'), mint('bob')]);
    // Alice holds it through F (forwarded to A, as alice).
    const { lease, alice } = await aliceHolds(forwarder.url, key, { token: aliceToken });
    const messages: string[] = [];
    for (const relay of [forwarder, authority]) {
      const bob = await RawLocks.open(relay.url, { token: bobToken });
      messages.push(...(await bobTriesTakeover(bob, (t) => rawCpSet(relay.url, 'shop', key, t, -999, { token: bobToken }), key, lease.token)));
      bob.close();
    }
    expectNoToken(messages, lease.token);
    await expectIntact(alice, lease, key);
    // Alice, connected to the authority itself, is the same identity.
    const aliceOnA = await RawLocks.open(authority.url, { token: aliceToken });
    expect(await aliceOnA.code('check', key, lease.token)).toBe('ok');
    aliceOnA.close();
  }, 60_000);
});

describeEtcd('issue-11 attack 1: lease takeover with the etcd backend', (etcdPath) => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcdCluster({ size: 1, etcdPath });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('issue-11 attack 1: with etcd shared by two relays, another user cannot renew, release, check or cp-set a lease on either relay', async () => {
    const args = ['--auth-secret', SECRET, '--etcd', cluster.endpoints.join(',')];
    await using relay1 = await startAttackedRelay(args);
    await using relay2 = await startAttackedRelay(args);
    const key = 'stock/etcd';
    const [aliceToken, bobToken] = await Promise.all([mint('alice'), mint('bob')]);
    const { lease, alice } = await aliceHolds(relay1.url, key, { token: aliceToken });
    const messages: string[] = [];
    for (const [relay, renewRefusal] of [
      [relay1, 'not-owner'],
      // Only the relay holding a lease keeps its etcd lease alive, so only it renews: lost elsewhere, for anyone.
      [relay2, 'lease-lost'],
    ] as [AttackedRelay, string][]) {
      const bob = await RawLocks.open(relay.url, { token: bobToken });
      messages.push(...(await bobTriesTakeover(bob, (t) => rawCpSet(relay.url, 'shop', key, t, -999, { token: bobToken }), key, lease.token, { renewRefusal })));
      bob.close();
    }
    expectNoToken(messages, lease.token);
    await expectIntact(alice, lease, key);
    // Alice on the other relay is the same identity (the owner is stored in etcd).
    const aliceOn2 = await RawLocks.open(relay2.url, { token: aliceToken });
    expect(await aliceOn2.code('check', key, lease.token)).toBe('ok');
    expect((await rawCpSet(relay2.url, 'shop', key, lease.token, 7, { token: aliceToken })).code).toBe('ok');
    expect(await aliceOn2.code('release', key, lease.token)).toBe('ok');
    aliceOn2.close();
  }, 60_000);
});
