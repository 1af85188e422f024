/**
 * Relays on one PostgreSQL database (`--postgres`) share its lock authority (the PostgreSQL
 * lock backend): mutual exclusion and token order hold across relays; a relay cut off from
 * the database answers unavailable within its deadline while the other goes on; and the seeded
 * nemesis run of lock-nemesis.test.ts, with two relays on the database and the database itself
 * partitioned away, frozen and restarted, stays linearizable, while its unfenced control is
 * still caught.
 *
 *   LOCK_CHAOS_SEEDS=20 LOCK_CHAOS_OPS=100 npx vitest run locks/postgres-locks.test.ts
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createClient, type CapsyncClient, type WebSocketConstructor } from '@capsync/client';
import { codeOf } from '../support/error-code.js';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { describePostgres } from '../support/describe-postgres.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { assertLinearizable, checkLinearizable, lockModel } from '../support/linearizability/index.js';
import { runLockChaos, type ChaosOptions } from '../support/lock-chaos.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { testSeed } from '../support/seeded-random.js';

const LOCK_TIMEOUT_MS = 500;
const SEEDS = Number(process.env['LOCK_CHAOS_SEEDS'] ?? 1);
const OPS = Number(process.env['LOCK_CHAOS_OPS'] ?? 25);

/** `url` with its port replaced: the same database through a fault proxy. */
function through(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

describePostgres('relays sharing a PostgreSQL database as their lock authority', (server) => {
  /** relay1 reaches the database only through this proxy: holding it cuts relay1 off. */
  let proxy: FaultProxy;
  let relay1: RestartableRelay;
  let relay2: RestartableRelay;
  const clients: CapsyncClient[] = [];
  const client = (url: string) => {
    const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS, lockTimeoutMs: 2_000 });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    const url = await server().createDatabase();
    proxy = await FaultProxy.start(server().port);
    const args = (db: string) => ['--postgres', db, '--lock-timeout-ms', String(LOCK_TIMEOUT_MS)];
    relay1 = await RestartableRelay.start(args(through(url, proxy.port)));
    relay2 = await RestartableRelay.start(args(url));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all([relay1?.dispose(), relay2?.dispose()]);
    await proxy?.close();
  });

  it('one holder across relays, tokens increasing across relays, a waiter on the other relay served on release, fenced writes on each', async () => {
    const a = client(relay1.url);
    const b = client(relay2.url);
    const la = await a.locks.acquire('shared', { ttlMs: 5_000 });
    expect(await codeOf(b.locks.acquire('shared', { ttlMs: 5_000 }))).toBe('lock-timeout');
    const waiting = b.locks.acquire('shared', { ttlMs: 5_000, waitMs: 5_000 });
    const ha = await a.open('pg-locks-a');
    await ha.cp.set('shared', 'from a', la);
    await la.release();
    const lb = await waiting;
    expect(lb.token).toBeGreaterThan(la.token);
    const hb = await b.open('pg-locks-b');
    await hb.cp.set('shared', 'from b', lb);
    // A's old token is refused (by A's client already: it knows it released the lease).
    expect(await codeOf(ha.cp.set('shared', 'late', la))).toBe('lease-lost');
    await lb.release();
  });

  it('a lease that runs out on one relay is granted on the other, never before, with a larger token', async () => {
    const a = client(relay1.url);
    const b = client(relay2.url);
    const started = performance.now();
    // Nobody renews it: the lease runs out in the database 400 ms after its grant.
    const la = await a.locks.acquire('expiring', { ttlMs: 400 });
    const lb = await b.locks.acquire('expiring', { ttlMs: 1_000, waitMs: 5_000 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(399);
    expect(lb.token).toBeGreaterThan(la.token);
    await lb.release();
  });

  it('a relay cut off from the database answers unavailable within its deadline; the other relay goes on', async () => {
    const a = client(relay1.url);
    const b = client(relay2.url);
    const la = await a.locks.acquire('cut', { ttlMs: 1_000 });
    const ha = await a.open('pg-cut');
    // Loaded on relay1 before the cut: what is measured is the fencing check, not a document load.
    await ha.whenSynced({ timeoutMs: 5_000 });
    proxy.setMode('hold');
    try {
      let started = performance.now();
      expect(await codeOf(a.locks.acquire('other', { ttlMs: 1_000 }))).toBe('unavailable');
      expect(performance.now() - started).toBeLessThan(LOCK_TIMEOUT_MS + 400);
      started = performance.now();
      expect(await codeOf(ha.cp.set('cut', 1, la))).toBe('unavailable');
      expect(performance.now() - started).toBeLessThan(LOCK_TIMEOUT_MS + 400);
      // relay2 grants once relay1's lease ran out in the database (nobody can renew it), never before.
      const lb = await b.locks.acquire('cut', { ttlMs: 1_000, waitMs: 8_000 });
      expect(lb.token).toBeGreaterThan(la.token);
      expect(la.valid).toBe(false);
      await lb.release();
    } finally {
      proxy.setMode('pass');
    }
    const again = await a.locks.acquire('cut', { ttlMs: 1_000, waitMs: 3_000 });
    await again.release();
  }, 30_000);
});

describePostgres('locks under a nemesis, two relays on one PostgreSQL database', (server) => {
  /** One proxy per relay in front of the database, so the nemesis can cut one relay off. */
  const proxies: FaultProxy[] = [];
  let base: Omit<ChaosOptions, 'seed'>;

  beforeAll(async () => {
    const url = await server().createDatabase();
    proxies.push(await FaultProxy.start(server().port), await FaultProxy.start(server().port));
    base = {
      opsPerWorker: OPS,
      relays: 2,
      workers: 4,
      keys: 2,
      ttlMs: 300,
      lockTimeoutMs: 600,
      nemesis: true,
      stallChance: 0.15,
      unavailablePauseMs: 100,
      perRelayArgs: (r) => ['--postgres', through(url, proxies[r]!.port)],
      extraNemeses: [
        {
          name: 'a relay cut off from PostgreSQL',
          inject: async (rnd) => {
            const p = proxies[rnd.int(0, proxies.length - 1)]!;
            p.setMode(rnd.pick(['hold', 'reset'] as const));
            return async () => p.setMode('pass');
          },
        },
        {
          name: 'PostgreSQL frozen (SIGSTOP)',
          inject: async () => {
            server().pause();
            return async () => server().resume();
          },
        },
        {
          name: 'PostgreSQL restart (fast shutdown, then start)',
          inject: async () => {
            await server().stop();
            return async () => server().start();
          },
        },
      ],
      log: (line) => console.log(line),
    };
  }, 60_000);
  afterAll(async () => {
    server().resume();
    await Promise.all(proxies.map((p) => p.close()));
  });

  const first = testSeed('lock-nemesis-postgres');
  for (let i = 0; i < SEEDS; i++) {
    const seed = first + i;
    it(`seed ${seed}: linearizable across both relays, tokens increase, unavailable within deadlines`, async () => {
      const result = await runLockChaos({ ...base, seed });
      console.log(`seed ${seed} nemesis: ${result.nemesisEvents.join('; ')}`);
      expect(result.grants).toBeGreaterThan(0);
      // One FencedResource written by the workers of both relays: the leases of both relays as one authority.
      assertLinearizable(lockModel({ fence: 'resource' }), result.userHistory, { label: `pg-nemesis-user-${seed}`, timeoutMs: 30_000 });
      result.cpHistories.forEach((history, r) => {
        assertLinearizable(lockModel({ fence: 'relay' }), history, { label: `pg-nemesis-cp-relay${r}-${seed}`, timeoutMs: 30_000 });
      });
      expect(result.slowUnavailable.map((op) => `${op.input.f} ${op.tookMs.toFixed(0)} ms`)).toEqual([]);
    }, 180_000);
  }

  it('control: the same two relays against an unfenced resource are caught by the checker', async () => {
    const seed = first + SEEDS;
    const result = await runLockChaos({ ...base, seed, opsPerWorker: 12, keys: 1, nemesis: false, stallChance: 0.5, waitChoices: [1_000], unfenced: true });
    const verdict = checkLinearizable(lockModel({ fence: 'resource' }), result.userHistory, { timeoutMs: 30_000 });
    expect(verdict.ok).toBe(false);
    // The relays' own fences held in the same run.
    result.cpHistories.forEach((history, r) => {
      assertLinearizable(lockModel({ fence: 'relay' }), history, { label: `pg-control-cp-relay${r}-${seed}`, timeoutMs: 30_000 });
    });
  }, 180_000);
});
