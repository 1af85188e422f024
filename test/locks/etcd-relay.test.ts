/**
 * Relays with `--etcd`: several relays share one lock authority on a real 3-member etcd
 * cluster. Mutual exclusion and token order hold across relays; a relay cut off from etcd
 * answers unavailable within its deadline while the others go on; and the seeded nemesis run
 * of lock-nemesis.test.ts, against the etcd backend, stays linearizable.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createClient, type CapsyncClient, type WebSocketConstructor } from '@capsync/client';
import { codeOf } from '../support/error-code.js';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { describeEtcd } from '../support/describe-etcd.js';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster.js';
import { assertLinearizable, lockModel } from '../support/linearizability/index.js';
import { runLockChaos } from '../support/lock-chaos.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { testSeed } from '../support/seeded-random.js';
import { FaultProxy } from '../support/fault-proxy.js';

const LOCK_TIMEOUT_MS = 500;


describeEtcd('relays sharing etcd as their lock authority', (etcdPath) => {
  let cluster: EtcdCluster;
  /** relay1 reaches etcd only through these proxies (one per member): holding them all cuts it off. */
  let proxies: FaultProxy[];
  let relay1: RestartableRelay;
  let relay2: RestartableRelay;
  const clients: CapsyncClient[] = [];
  const client = (url: string) => {
    const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS, lockTimeoutMs: 2_000 });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    cluster = await startEtcdCluster({ size: 3, etcdPath });
    proxies = await Promise.all(cluster.members.map((m) => FaultProxy.start(m.clientPort)));
    const args = (endpoints: string[]) => ['--etcd', endpoints.join(','), '--lock-timeout-ms', String(LOCK_TIMEOUT_MS)];
    relay1 = await RestartableRelay.start(args(proxies.map((p) => `http://127.0.0.1:${p.port}`)));
    relay2 = await RestartableRelay.start(args(cluster.endpoints));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all([relay1?.dispose(), relay2?.dispose()]);
    await Promise.all((proxies ?? []).map((p) => p.close()));
    await cluster?.close();
  });

  it('one holder across relays, tokens increasing across relays, fenced writes on each', async () => {
    const a = client(relay1.url);
    const b = client(relay2.url);
    const la = await a.locks.acquire('shared', { ttlMs: 5_000 });
    expect(await codeOf(b.locks.acquire('shared', { ttlMs: 5_000 }))).toBe('lock-timeout');
    const waiting = b.locks.acquire('shared', { ttlMs: 5_000, waitMs: 5_000 });
    const ha = await a.open('etcd-doc');
    await ha.cp.set('shared', 'from a', la);
    await la.release();
    const lb = await waiting;
    expect(lb.token).toBeGreaterThan(la.token);
    const hb = await b.open('etcd-doc');
    await hb.cp.set('shared', 'from b', lb);
    // A's old token is refused on its own relay too: etcd knows a newer one.
    expect(await codeOf(ha.cp.set('shared', 'late', la))).toBe('lease-lost');
    await lb.release();
  });

  it('a relay cut off from etcd answers unavailable within its deadline; the other relay goes on', async () => {
    const a = client(relay1.url);
    const b = client(relay2.url);
    const la = await a.locks.acquire('cut', { ttlMs: 1_000 });
    const ha = await a.open('etcd-cut');
    for (const p of proxies) p.setMode('hold');
    try {
      let started = performance.now();
      expect(await codeOf(a.locks.acquire('other', { ttlMs: 1_000 }))).toBe('unavailable');
      expect(performance.now() - started).toBeLessThan(LOCK_TIMEOUT_MS + 400);
      started = performance.now();
      expect(await codeOf(ha.cp.set('cut', 1, la))).toBe('unavailable');
      expect(performance.now() - started).toBeLessThan(LOCK_TIMEOUT_MS + 400);
      // relay2 grants once relay1's lease is gone from etcd (its etcd lease runs out: relay1
      // cannot keep it alive any more), never before.
      const lb = await b.locks.acquire('cut', { ttlMs: 1_000, waitMs: 8_000 });
      expect(lb.token).toBeGreaterThan(la.token);
      expect(la.valid).toBe(false);
      await lb.release();
    } finally {
      for (const p of proxies) p.setMode('pass');
    }
    const again = await a.locks.acquire('cut', { ttlMs: 1_000, waitMs: 3_000 });
    await again.release();
  }, 30_000);

  it('nemesis run against the etcd backend stays linearizable', async () => {
    const seed = testSeed('lock-nemesis-etcd');
    const result = await runLockChaos({
      seed,
      opsPerWorker: Number(process.env['LOCK_CHAOS_OPS'] ?? 25),
      workers: 3,
      keys: 2,
      ttlMs: 300,
      lockTimeoutMs: 600,
      nemesis: true,
      stallChance: 0.15,
      // The relay reaches etcd through the proxies, so the nemesis can cut it off.
      relayArgs: ['--etcd', proxies.map((p) => `http://127.0.0.1:${p.port}`).join(',')],
      extraNemeses: [
        {
          name: 'relay cut off from etcd',
          inject: async (rnd) => {
            const mode = rnd.pick(['hold', 'reset'] as const);
            for (const p of proxies) p.setMode(mode);
            return async () => {
              for (const p of proxies) p.setMode('pass');
            };
          },
        },
        {
          name: 'etcd member SIGKILL (then restart)',
          inject: async (rnd) => {
            const member = cluster.members[rnd.int(0, cluster.members.length - 1)]!;
            await member.kill('SIGKILL');
            return async () => {
              await member.restart();
            };
          },
        },
        {
          name: 'etcd minority: two members frozen',
          inject: async (rnd) => {
            const spared = rnd.int(0, cluster.members.length - 1);
            const frozen = cluster.members.filter((_, i) => i !== spared);
            for (const m of frozen) m.pause();
            return async () => {
              for (const m of frozen) m.resume();
            };
          },
        },
      ],
      log: (line) => console.log(line),
    });
    console.log(`seed ${seed} nemesis: ${result.nemesisEvents.join('; ')}`);
    expect(result.grants).toBeGreaterThan(0);
    assertLinearizable(lockModel({ fence: 'resource' }), result.userHistory, { label: `etcd-nemesis-user-${seed}`, timeoutMs: 30_000 });
    assertLinearizable(lockModel({ fence: 'relay' }), result.cpHistory, { label: `etcd-nemesis-cp-${seed}`, timeoutMs: 30_000 });
    expect(result.slowUnavailable.map((op) => `${op.input.f} ${op.tookMs.toFixed(0)} ms`)).toEqual([]);
  }, 180_000);
});
