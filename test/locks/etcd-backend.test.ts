/**
 * The etcd lock authority against a real 3-member etcd cluster: the LockBackend contract
 * (grants, waiting, renewals, fencing checks, expiry), leases of a relay that went away,
 * and the CP answers under faults: a partition between the relay and etcd (through a TCP
 * fault proxy), a relay that can only reach a minority, and a member (leader included)
 * that dies. Deadlines are measured, not assumed.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { isCapsyncError, type CapsyncError } from '@capsync/core';
import { EtcdLockBackend, etcdTtlSeconds, type EtcdLockBackendOptions } from '@capsync/server';
import { describeEtcd } from '../support/describe-etcd.js';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { withTimeout } from '../support/wait.js';

/** Timer and event-loop slack allowed on top of a deadline. */
/** The identity every lease of these tests is acquired for (ownership has a test of its own). */
const OWNER = 'sub:etcd-test';
const SLACK_MS = 150;
/** Short budget for the fault tests, so they run fast. */
const FAULT_OP_TIMEOUT_MS = 500;

let cluster: EtcdCluster;
let inspector: Etcd3;
const backends: EtcdLockBackend[] = [];
const proxies: FaultProxy[] = [];
let keySeq = 0;

/** A key no other test touches. */
const freshKey = (name: string) => `${name}-${++keySeq}`;

function backend(options: Partial<EtcdLockBackendOptions> = {}): EtcdLockBackend {
  const b = new EtcdLockBackend({ endpoints: cluster.endpoints, ...options });
  backends.push(b);
  return b;
}

async function proxied(member = 0): Promise<FaultProxy> {
  const proxy = await FaultProxy.start(cluster.members[member]!.clientPort);
  proxies.push(proxy);
  return proxy;
}

const proxyUrl = (p: FaultProxy) => `http://127.0.0.1:${p.port}`;

/** The error code a promise rejects with ('ok' if it resolves), and how long it took. */
async function outcome(p: Promise<unknown>): Promise<{ code: string; ms: number; err?: CapsyncError }> {
  const started = performance.now();
  try {
    await p;
    return { code: 'ok', ms: performance.now() - started };
  } catch (err) {
    if (isCapsyncError(err)) return { code: err.code, ms: performance.now() - started, err };
    throw err;
  }
}

const codeOf = async (p: Promise<unknown>) => (await outcome(p)).code;

/** The lock key as etcd has it (a linearizable read through a client of its own). */
async function etcdKey(key: string) {
  const res = await inspector.kv.range({ key: Buffer.from(`capsync/locks/${key}`) });
  return res.kvs[0];
}

/** Retries `fn` until it resolves (after a fault heals), failing after `timeoutMs`. */
async function eventually<T>(fn: () => Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (performance.now() > deadline) throw new Error(`${what}: still failing after ${timeoutMs} ms: ${(err as Error).message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describeEtcd('etcd lock backend', (etcdPath) => {
  beforeAll(async () => {
    const started = performance.now();
    cluster = await startEtcdCluster({ size: 3, etcdPath });
    console.log(`[etcd] 3-member cluster healthy after ${Math.round(performance.now() - started)} ms`);
    inspector = new Etcd3({ hosts: cluster.endpoints });
  }, 30_000);

  afterEach(async () => {
    await Promise.all(backends.splice(0).map((b) => b.close()));
    await Promise.all(proxies.splice(0).map((p) => p.close()));
    for (const m of cluster.members) m.resume();
  });

  afterAll(async () => {
    inspector?.close();
    await cluster?.close();
  });

  it('grants one holder at a time; tokens are create revisions that grow across relays; check tells stale from lost', async () => {
    const key = freshKey('basic');
    const a = backend();
    const b = backend();
    const t0 = performance.now();
    const g1 = await a.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER });
    const acquireMs = performance.now() - t0;
    expect(g1).toEqual({ key, token: expect.any(Number), ttlMs: 5_000 });
    expect(Number((await etcdKey(key))!.create_revision)).toBe(g1.token);
    // Held: by this relay (answered locally) and by another relay (answered by etcd).
    expect(await codeOf(a.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER }))).toBe('lock-timeout');
    expect(await codeOf(b.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER }))).toBe('lock-timeout');
    await a.check(key, g1.token, OWNER);
    await b.check(key, g1.token, OWNER);
    expect(await codeOf(a.check(key, g1.token + 1, OWNER))).toBe('lease-lost');
    expect(await codeOf(a.release(key, g1.token + 1, OWNER))).toBe('lease-lost');

    const t1 = performance.now();
    await a.release(key, g1.token, OWNER);
    const releaseMs = performance.now() - t1;
    console.log(`[etcd] acquire ${acquireMs.toFixed(1)} ms, release ${releaseMs.toFixed(1)} ms`);
    expect(await etcdKey(key)).toBeUndefined();
    // Released, nothing newer: lost, not stale. Releasing twice changes nothing.
    expect(await codeOf(a.check(key, g1.token, OWNER))).toBe('lease-lost');
    expect(await codeOf(a.release(key, g1.token, OWNER))).toBe('lease-lost');
    expect(await codeOf(a.renew(key, g1.token, 5_000, OWNER))).toBe('lease-lost');

    const g2 = await b.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER });
    expect(g2.token).toBeGreaterThan(g1.token);
    expect(await codeOf(a.check(key, g1.token, OWNER))).toBe('stale-token');
    expect(await codeOf(a.release(key, g1.token, OWNER))).toBe('lease-lost');
    await b.release(key, g2.token, OWNER);
    // The lock key is gone, but a token older than the last grant is still stale.
    expect(await codeOf(b.check(key, g1.token, OWNER))).toBe('stale-token');
    expect(await codeOf(b.check(key, g2.token, OWNER))).toBe('lease-lost');

    // A restarted relay (a new instance) continues the sequence.
    await a.close();
    const restarted = backend();
    const g3 = await restarted.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER });
    expect(g3.token).toBeGreaterThan(g2.token);
    await restarted.release(key, g3.token, OWNER);

    // Tokens strictly increase over many grants, whichever relay grants them.
    let last = g3.token;
    const loopStarted = performance.now();
    for (let i = 0; i < 20; i++) {
      const by = i % 2 === 0 ? b : restarted;
      const g = await by.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER });
      expect(g.token).toBeGreaterThan(last);
      last = g.token;
      await by.release(key, g.token, OWNER);
    }
    console.log(`[etcd] acquire+release, warm: ${((performance.now() - loopStarted) / 20).toFixed(1)} ms per pair`);
  });

  it('serves this relay’s waiters first come first served, and a waiter on another relay when the key is deleted', async () => {
    const key = freshKey('wait');
    const a = backend();
    const b = backend();
    const g1 = await a.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER });
    const order: string[] = [];
    const w1 = a.acquire({ key, ttlMs: 5_000, waitMs: 5_000, owner: OWNER }).then((g) => (order.push('w1'), g));
    const w2 = a.acquire({ key, ttlMs: 5_000, waitMs: 5_000, owner: OWNER }).then((g) => (order.push('w2'), g));
    const released = performance.now();
    await a.release(key, g1.token, OWNER);
    const g2 = await w1;
    console.log(`[etcd] local waiter granted ${(performance.now() - released).toFixed(1)} ms after the release`);
    expect(g2.token).toBeGreaterThan(g1.token);
    expect(order).toEqual(['w1']);
    await a.release(key, g2.token, OWNER);
    const g3 = await w2;
    expect(order).toEqual(['w1', 'w2']);
    expect(g3.token).toBeGreaterThan(g2.token);

    // A waiter on another relay learns of the release through its watch.
    const remote = b.acquire({ key, ttlMs: 5_000, waitMs: 5_000, owner: OWNER });
    const remoteReleased = performance.now();
    await a.release(key, g3.token, OWNER);
    const g4 = await remote;
    console.log(`[etcd] waiter on another relay granted ${(performance.now() - remoteReleased).toFixed(1)} ms after the release`);
    expect(g4.token).toBeGreaterThan(g3.token);
    await b.release(key, g4.token, OWNER);
  });

  it('a waiter gets LockTimeoutError once waitMs has passed; an aborted waiter is withdrawn and granted nothing', async () => {
    const key = freshKey('timeout');
    const a = backend();
    const b = backend();
    const g = await a.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER });
    for (const [who, by] of [['same relay', a], ['other relay', b]] as const) {
      const r = await outcome(by.acquire({ key, ttlMs: 5_000, waitMs: 300, owner: OWNER }));
      expect(r.code, who).toBe('lock-timeout');
      expect(r.ms, who).toBeGreaterThanOrEqual(299);
      // The other relay asks etcd once more at the end of the wait (a grant or proof it is
      // held): within the lock service's deadline of waitMs + opTimeoutMs.
      expect(r.ms, who).toBeLessThan(300 + by.opTimeoutMs);
      console.log(`[etcd] lock-timeout (${who}) after ${r.ms.toFixed(0)} ms for waitMs 300`);
    }
    const abort = new AbortController();
    const withdrawn = b.acquire({ key, ttlMs: 5_000, waitMs: 5_000, owner: OWNER, signal: abort.signal });
    abort.abort();
    expect(await codeOf(withdrawn)).toBe('unavailable');
    await a.release(key, g.token, OWNER);
    // Nobody took the key for the withdrawn waiter.
    expect(await etcdKey(key)).toBeUndefined();
  });

  it('renew extends the local deadline; a renewal longer than the etcd lease moves the key to a longer lease, same token', async () => {
    const key = freshKey('renew');
    const a = backend();
    const g = await a.acquire({ key, ttlMs: 1_500, waitMs: 0, owner: OWNER });
    const leaseId = (await etcdKey(key))!.lease;
    expect(Number((await inspector.leaseClient.leaseTimeToLive({ ID: leaseId })).grantedTTL)).toBe(etcdTtlSeconds(1_500));

    const renewed = await a.renew(key, g.token, 4_500, OWNER);
    expect(renewed).toEqual({ key, token: g.token, ttlMs: 4_500 });
    const kv = (await etcdKey(key))!;
    expect(Number(kv.create_revision)).toBe(g.token);
    expect(kv.lease).not.toBe(leaseId);
    expect(Number((await inspector.leaseClient.leaseTimeToLive({ ID: kv.lease })).grantedTTL)).toBe(5);
    // The previous etcd lease is revoked.
    await eventually(async () => {
      if (Number((await inspector.leaseClient.leaseTimeToLive({ ID: leaseId })).TTL) !== -1) throw new Error('old lease still there');
    }, 'revoking the previous etcd lease');
    await a.check(key, g.token, OWNER);

    // Wrong tokens and other keys are not renewable.
    expect(await codeOf(a.renew(key, g.token + 1, 1_000, OWNER))).toBe('lease-lost');
    expect(await codeOf(a.renew(freshKey('never-held'), g.token, 1_000, OWNER))).toBe('lease-lost');
    // A renewal with a shorter ttl: a keepalive; the local deadline is now + 300 ms.
    const started = performance.now();
    await a.renew(key, g.token, 300, OWNER);
    const [key2, token2] = await new Promise<[string, number]>((resolve) => a.once('expired', (k, t) => resolve([k, t])));
    const after = performance.now() - started;
    expect([key2, token2]).toEqual([key, g.token]);
    expect(after).toBeGreaterThanOrEqual(299);
    expect(after).toBeLessThan(300 + SLACK_MS);
    expect(await codeOf(a.renew(key, g.token, 1_000, OWNER))).toBe('lease-lost');
    expect(await codeOf(a.check(key, g.token, OWNER))).toBe('lease-lost');
  });

  it('an unrenewed lease expires at its local deadline (not the etcd TTL): expired is emitted, another relay gets a larger token', async () => {
    const key = freshKey('expiry');
    const a = backend();
    const b = backend();
    const started = performance.now();
    const g = await a.acquire({ key, ttlMs: 400, waitMs: 0, owner: OWNER });
    const expiredAt = new Promise<number>((resolve) => a.once('expired', () => resolve(performance.now())));
    const next = await b.acquire({ key, ttlMs: 5_000, waitMs: 5_000, owner: OWNER });
    const grantedAt = performance.now();
    const at = await expiredAt;
    expect(at - started).toBeGreaterThanOrEqual(399);
    expect(at - started).toBeLessThan(400 + SLACK_MS);
    expect(grantedAt).toBeGreaterThanOrEqual(at);
    // Well before etcd's own TTL (2 s) would have freed the key.
    expect(grantedAt - started).toBeLessThan(1_000);
    expect(next.token).toBeGreaterThan(g.token);
    expect(await codeOf(a.check(key, g.token, OWNER))).toBe('stale-token');
    expect(await codeOf(a.release(key, g.token, OWNER))).toBe('lease-lost');
    await b.release(key, next.token, OWNER);
  });

  it('the lease of a relay that went away without releasing runs out in etcd within its TTL; keepalives hold it until then', async () => {
    const key = freshKey('crashed');
    const gone = backend();
    const b = backend();
    // 3.5 s locally, 4 s in etcd: a keepalive (every 4/3 s) must refresh the etcd lease.
    const g = await gone.acquire({ key, ttlMs: 3_500, waitMs: 0, owner: OWNER });
    const leaseId = (await etcdKey(key))!.lease;
    const ttlOf = async () => Number((await inspector.leaseClient.leaseTimeToLive({ ID: leaseId })).TTL);
    // etcd reports whole seconds left: seeing the TTL go up again means a keepalive landed.
    let lowest = await ttlOf();
    await eventually(async () => {
      const ttl = await ttlOf();
      lowest = Math.min(lowest, ttl);
      if (ttl <= lowest) throw new Error(`not refreshed yet (${ttl} s left)`);
    }, 'a keepalive refreshing the etcd lease', 3_000);

    // The relay stops (as if killed): no release, no more keepalives.
    await gone.close();
    const closedAt = performance.now();
    const next = await b.acquire({ key, ttlMs: 5_000, waitMs: 10_000, owner: OWNER });
    const freedAfter = performance.now() - closedAt;
    console.log(`[etcd] key of a stopped relay freed ${freedAfter.toFixed(0)} ms after it stopped (etcd TTL 4 s)`);
    expect(freedAfter).toBeLessThan(4_000 + 1_500);
    expect(next.token).toBeGreaterThan(g.token);
    await b.release(key, next.token, OWNER);
  });

  for (const mode of ['hold', 'reset'] as const) {
    it(`partitioned from etcd (proxy: ${mode}): every operation answers unavailable within opTimeoutMs, grants nothing, and works again after`, async () => {
      const proxy = await proxied(0);
      const a = backend({ endpoints: [proxyUrl(proxy)], opTimeoutMs: FAULT_OP_TIMEOUT_MS });
      const b = backend();
      const held = freshKey(`part-${mode}-held`);
      const free = freshKey(`part-${mode}-free`);
      const g = await a.acquire({ key: held, ttlMs: 1_000, waitMs: 0, owner: OWNER });
      const expired = new Promise<number>((resolve) => a.once('expired', () => resolve(performance.now())));
      const cutAt = performance.now();
      proxy.setMode(mode);

      const results = {
        acquire: await outcome(a.acquire({ key: free, ttlMs: 5_000, waitMs: 0, owner: OWNER })),
        renew: await outcome(a.renew(held, g.token, 1_000, OWNER)),
        check: await outcome(a.check(held, g.token, OWNER)),
        'acquire (waiting)': await outcome(a.acquire({ key: free, ttlMs: 5_000, waitMs: 200, owner: OWNER })),
      };
      const concurrent = await Promise.all([
        outcome(a.acquire({ key: free, ttlMs: 5_000, waitMs: 0, owner: OWNER })),
        outcome(a.check(held, g.token, OWNER)),
      ]);
      for (const [op, r] of Object.entries(results)) {
        expect(r.code, op).toBe('unavailable');
        expect(r.ms, op).toBeLessThan(FAULT_OP_TIMEOUT_MS + (op === 'acquire (waiting)' ? 200 : 0) + SLACK_MS);
      }
      for (const r of concurrent) {
        expect(r.code).toBe('unavailable');
        expect(r.ms).toBeLessThan(FAULT_OP_TIMEOUT_MS + SLACK_MS);
      }
      console.log(
        `[etcd] ${mode}: unavailable after ${Object.entries(results)
          .map(([op, r]) => `${op} ${r.ms.toFixed(0)} ms`)
          .join(', ')}`,
      );
      // The local deadline holds without etcd: the lease ends on time.
      expect((await expired) - cutAt).toBeLessThan(1_000 + SLACK_MS);
      const release = await outcome(a.release(held, g.token, OWNER));
      expect(release.code).toBe('lease-lost');

      // Nothing was granted: the other relay (which reaches etcd) finds the key free.
      expect(await etcdKey(free)).toBeUndefined();
      const other = await b.acquire({ key: free, ttlMs: 5_000, waitMs: 0, owner: OWNER });
      await b.release(free, other.token, OWNER);

      // Healed: the same relay works again.
      proxy.setMode('pass');
      const healedAt = performance.now();
      // Ended here, so not current, whatever etcd still has until the revoke or its TTL.
      expect(await eventually(() => codeOf(a.check(held, g.token, OWNER)).then((c) => (c === 'unavailable' ? Promise.reject(new Error(c)) : c)), 'checking after healing')).toBe('lease-lost');
      const again = await eventually(() => a.acquire({ key: free, ttlMs: 5_000, waitMs: 0, owner: OWNER }), 'acquiring after the partition healed');
      console.log(`[etcd] ${mode}: first grant ${(performance.now() - healedAt).toFixed(0)} ms after healing`);
      expect(again.token).toBeGreaterThan(other.token);
      await a.check(free, again.token, OWNER);
      await a.release(free, again.token, OWNER);
      // The partitioned holder's lease ran out in etcd too (the relay's revoke or the etcd TTL).
      await eventually(async () => {
        if (await etcdKey(held)) throw new Error('still there');
      }, 'the expired lease leaving etcd');
    });
  }

  it('a release that cannot reach etcd answers unavailable within opTimeoutMs; the lease still ends in etcd', async () => {
    const proxy = await proxied(1);
    const a = backend({ endpoints: [proxyUrl(proxy)], opTimeoutMs: FAULT_OP_TIMEOUT_MS });
    const b = backend();
    const key = freshKey('release-cut');
    const g = await a.acquire({ key, ttlMs: 2_000, waitMs: 0, owner: OWNER });
    proxy.setMode('hold');
    const r = await outcome(a.release(key, g.token, OWNER));
    expect(r.code).toBe('unavailable');
    expect(r.ms).toBeLessThan(FAULT_OP_TIMEOUT_MS + SLACK_MS);
    // No longer kept alive: etcd frees the key within its TTL (2 s).
    const next = await b.acquire({ key, ttlMs: 1_000, waitMs: 5_000, owner: OWNER });
    expect(next.token).toBeGreaterThan(g.token);
    await b.release(key, next.token, OWNER);
  });

  it('a relay that reaches only a minority (two members frozen) answers unavailable within the deadline and grants nothing; it recovers', async () => {
    const [m1, m2, m3] = cluster.members as [EtcdCluster['members'][number], EtcdCluster['members'][number], EtcdCluster['members'][number]];
    const a = backend({ endpoints: [m1.clientUrl], opTimeoutMs: FAULT_OP_TIMEOUT_MS });
    const held = freshKey('minority-held');
    const free = freshKey('minority-free');
    const g = await a.acquire({ key: held, ttlMs: 5_000, waitMs: 0, owner: OWNER });
    m2.pause();
    m3.pause();
    try {
      const ops = {
        acquire: () => a.acquire({ key: free, ttlMs: 5_000, waitMs: 0, owner: OWNER }),
        renew: () => a.renew(held, g.token, 5_000, OWNER),
        check: () => a.check(held, g.token, OWNER),
      };
      // Twice: right after the freeze (m1 may still be leader) and once m1 noticed it is alone.
      for (const round of [1, 2]) {
        for (const [op, run] of Object.entries(ops)) {
          const r = await outcome(run());
          expect(r.code, `${op} (round ${round})`).toBe('unavailable');
          expect(r.ms, `${op} (round ${round})`).toBeLessThan(FAULT_OP_TIMEOUT_MS + SLACK_MS);
        }
      }
      const release = await outcome(a.release(held, g.token, OWNER));
      expect(release.code).toBe('unavailable');
      expect(release.ms).toBeLessThan(FAULT_OP_TIMEOUT_MS + SLACK_MS);
    } finally {
      m2.resume();
      m3.resume();
    }
    await withTimeout(cluster.waitHealthy(), 15_000, 'the cluster to heal');
    // Nothing was granted while m1 was alone.
    expect(await etcdKey(free)).toBeUndefined();
    const again = await eventually(() => a.acquire({ key: free, ttlMs: 5_000, waitMs: 0, owner: OWNER }), 'acquiring after the members resumed');
    await a.release(free, again.token, OWNER);
  });

  it('keeps working with the majority when a member dies, the leader included', async () => {
    const a = backend({ opTimeoutMs: 2_000 });
    const key = freshKey('member-down');
    const roundTrip = async () => {
      const g = await a.acquire({ key, ttlMs: 5_000, waitMs: 0, owner: OWNER });
      await a.check(key, g.token, OWNER);
      await a.renew(key, g.token, 5_000, OWNER);
      await a.release(key, g.token, OWNER);
      return g.token;
    };
    let last = await roundTrip();
    for (const role of ['leader', 'follower'] as const) {
      // Asked each time: killing the leader made another member leader.
      const leader = await cluster.leader();
      const victim = role === 'leader' ? leader : cluster.members.find((m) => m !== leader)!;
      await victim.kill('SIGKILL');
      const started = performance.now();
      // Straight after the kill: an election may be running (leader) and a third of the calls
      // go to the dead member first.
      const rounds: number[] = [];
      for (let i = 0; i < 5; i++) {
        const roundStarted = performance.now();
        const token = await roundTrip();
        rounds.push(Math.round(performance.now() - roundStarted));
        expect(token).toBeGreaterThan(last);
        last = token;
      }
      console.log(`[etcd] acquire/check/renew/release rounds with ${role === 'leader' ? 'the leader' : 'a follower'} dead: ${rounds.join(', ')} ms`);
      await victim.restart();
    }
    await cluster.waitHealthy();
  });
});
