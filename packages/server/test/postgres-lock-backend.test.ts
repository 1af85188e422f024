/**
 * PostgresLockBackend beyond the conformance suite (lock-backend-conformance.test.ts runs that):
 * several backends on one database are one authority (as relays sharing it are), `expired` is
 * reported once, by the relay that granted, and the database frozen or restarted makes every
 * method answer unavailable in time and loses no token.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { PostgresLockBackend } from '../src/locks/postgres-backend.js';
import type { LockBackend, LockGrant } from '../src/locks/lock-backend.js';
import { describePostgres } from '../../../test/support/describe-postgres.js';

const OP_TIMEOUT_MS = 500;
const SLACK_MS = 250;
const ALICE = 'sub:alice';
const BOB = 'sub:bob';

const code = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (err: { code?: string }) => err.code ?? String(err));

describePostgres('PostgresLockBackend: relays sharing one database', (server) => {
  let url: string;
  const opened: LockBackend[] = [];
  const open = async () => {
    const b = await PostgresLockBackend.open({ url, opTimeoutMs: OP_TIMEOUT_MS });
    opened.push(b);
    return b;
  };
  beforeAll(async () => {
    url = await server().createDatabase();
  }, 30_000);
  afterAll(async () => {
    server().resume();
    await Promise.all(opened.map((b) => b.close()));
  });

  it('relays started together on a fresh database all open, even with a short opTimeoutMs (one migrates, the others wait for it)', async () => {
    const fresh = await server().createDatabase();
    const backends = await Promise.all(Array.from({ length: 4 }, () => PostgresLockBackend.open({ url: fresh, opTimeoutMs: 50 })));
    opened.push(...backends);
    // (A 50 ms budget is too short for a statement on a cold connection of a loaded machine: the schema is checked with the default.)
    const b = await PostgresLockBackend.open({ url: fresh });
    opened.push(b);
    const g = await b.acquire({ key: 'fresh', ttlMs: 1_000, waitMs: 0, owner: ALICE });
    expect(g.token).toBe(1);
  });

  it('two relays racing for one key: exactly one grant per round, tokens strictly increasing across both', async () => {
    const [a, b] = [await open(), await open()];
    let last = 0;
    for (let round = 0; round < 30; round++) {
      const outcomes = await Promise.allSettled([a, b].map((x, i) => x.acquire({ key: 'race', ttlMs: 10_000, waitMs: 0, owner: i ? BOB : ALICE })));
      const granted = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [{ grant: o.value, backend: i ? b : a, owner: i ? BOB : ALICE }] : []));
      expect(granted).toHaveLength(1);
      const refused = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      expect(refused.reason.code).toBe('lock-timeout');
      const { grant, backend, owner } = granted[0]!;
      expect(grant.token).toBeGreaterThan(last);
      last = grant.token;
      // The other relay sees the same lease: its owner's, current.
      await (backend === a ? b : a).check('race', grant.token, owner);
      await backend.release('race', grant.token, owner);
    }
  });

  it("waiters on both relays are all served, one holder at a time, each grant after the previous holder's release", async () => {
    const [a, b] = [await open(), await open()];
    const first = await a.acquire({ key: 'queue', ttlMs: 10_000, waitMs: 0, owner: ALICE });
    let holders = 0;
    let maxHolders = 0;
    const tokens: number[] = [first.token];
    const wait = (x: LockBackend, owner: string) =>
      x.acquire({ key: 'queue', ttlMs: 10_000, waitMs: 10_000, owner }).then(async (g: LockGrant) => {
        maxHolders = Math.max(maxHolders, ++holders);
        tokens.push(g.token);
        await new Promise((resolve) => setTimeout(resolve, 20));
        holders--;
        await x.release('queue', g.token, owner);
      });
    const waiting = [wait(a, ALICE), wait(b, BOB), wait(a, ALICE), wait(b, BOB)];
    await new Promise((resolve) => setTimeout(resolve, 50));
    await a.release('queue', first.token, ALICE);
    await Promise.all(waiting);
    expect(maxHolders).toBe(1);
    expect(tokens).toEqual([...tokens].sort((x, y) => x - y));
    expect(new Set(tokens).size).toBe(5);
  }, 20_000);

  it('a lease that runs out is reported expired once, by the relay that granted it, also when the other relay takes the key over', async () => {
    const [a, b] = [await open(), await open()];
    const expired: string[] = [];
    a.on('expired', (key, token) => void expired.push(`a:${key}#${token}`));
    b.on('expired', (key, token) => void expired.push(`b:${key}#${token}`));
    const g = await a.acquire({ key: 'runs-out', ttlMs: 200, waitMs: 0, owner: ALICE });
    const next = await b.acquire({ key: 'runs-out', ttlMs: 10_000, waitMs: 5_000, owner: BOB });
    expect(next.token).toBeGreaterThan(g.token);
    // Reported by the relay that granted it; the one that took the key over reports nothing.
    await vi.waitFor(() => expect(expired.length).toBeGreaterThan(0), { timeout: 5_000 });
    expect(expired).toEqual([`a:runs-out#${g.token}`]);
    await b.release('runs-out', next.token, BOB);
  });

  it('a lease renewed through the other relay is not reported expired at its first deadline; one released there is never reported', async () => {
    const [a, b] = [await open(), await open()];
    const expired: { token: number; at: number }[] = [];
    a.on('expired', (_key, token) => void expired.push({ token, at: performance.now() }));
    const renewed = await a.acquire({ key: 'renewed-elsewhere', ttlMs: 200, waitMs: 0, owner: ALICE });
    const renewedAt = performance.now();
    await b.renew('renewed-elsewhere', renewed.token, 1_000, ALICE);
    const released = await a.acquire({ key: 'released-elsewhere', ttlMs: 200, waitMs: 0, owner: ALICE });
    await b.release('released-elsewhere', released.token, ALICE);
    await a.check('renewed-elsewhere', renewed.token, ALICE);
    // It runs out at the renewed deadline, not the first one, and the granting relay says so;
    // the lease released elsewhere is never reported.
    await vi.waitFor(() => expect(expired.length).toBeGreaterThan(0), { timeout: 5_000 });
    expect(expired.map((e) => e.token)).toEqual([renewed.token]);
    expect(expired[0]!.at - renewedAt).toBeGreaterThanOrEqual(900);
    expect(await code(a.check('renewed-elsewhere', renewed.token, ALICE))).toBe('lease-lost');
  });

  it('a lease granted here and released through the other relay (its owner failed over) frees the key here at once, and is not reported expired', async () => {
    const [a, b] = [await open(), await open()];
    const expired: number[] = [];
    a.on('expired', (_key, token) => void expired.push(token));
    const g = await a.acquire({ key: 'failed-over', ttlMs: 60_000, waitMs: 0, owner: ALICE });
    await b.release('failed-over', g.token, ALICE);
    const next = await a.acquire({ key: 'failed-over', ttlMs: 1_000, waitMs: 0, owner: BOB });
    expect(next.token).toBeGreaterThan(g.token);
    await a.release('failed-over', next.token, BOB);
    expect(expired).toEqual([]);
  });

  it('leases are measured on the database clock: the row holds the expiry the database computed', async () => {
    const a = await open();
    const g = await a.acquire({ key: 'db-clock', ttlMs: 60_000, waitMs: 0, owner: ALICE });
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ ms: number; last_token: string; owner: string }>(
        "SELECT extract(epoch FROM expires_at - clock_timestamp()) * 1000 AS ms, last_token, owner FROM capsync_locks WHERE key = 'db-clock'",
      );
      expect(Number(rows[0]!.last_token)).toBe(g.token);
      expect(rows[0]!.owner).toBe(ALICE);
      expect(Number(rows[0]!.ms)).toBeGreaterThan(59_000);
      expect(Number(rows[0]!.ms)).toBeLessThanOrEqual(60_000);
      // Moving the expiry in the database (as its clock passing would) ends the lease for every relay.
      await client.query("UPDATE capsync_locks SET expires_at = clock_timestamp() WHERE key = 'db-clock'");
    } finally {
      await client.end();
    }
    expect(await code(a.check('db-clock', g.token, ALICE))).toBe('lease-lost');
    const next = await a.acquire({ key: 'db-clock', ttlMs: 1_000, waitMs: 0, owner: BOB });
    expect(next.token).toBeGreaterThan(g.token);
  });

  it('the database frozen: every method answers unavailable within opTimeoutMs, nothing is granted; it works again once resumed', async () => {
    const a = await open();
    const held = await a.acquire({ key: 'frozen-held', ttlMs: 30_000, waitMs: 0, owner: ALICE });
    server().pause();
    try {
      for (const [what, call] of [
        ['acquire', () => a.acquire({ key: 'frozen-free', ttlMs: 300, waitMs: 0, owner: ALICE })],
        ['waiting acquire', () => a.acquire({ key: 'frozen-free', ttlMs: 300, waitMs: 100, owner: BOB })],
        ['renew', () => a.renew('frozen-held', held.token, 30_000, ALICE)],
        ['check', () => a.check('frozen-held', held.token, ALICE)],
        ['release', () => a.release('frozen-held', held.token, ALICE)],
      ] as const) {
        const started = performance.now();
        expect(await code(call()), what).toBe('unavailable');
        expect(performance.now() - started, `${what} answered after`).toBeLessThan(OP_TIMEOUT_MS + 100 + SLACK_MS);
      }
    } finally {
      server().resume();
    }
    const until = performance.now() + 10_000;
    let after: LockGrant | undefined;
    while (!after) {
      after = await a.acquire({ key: 'frozen-free', ttlMs: 10_000, waitMs: 1_000, owner: BOB }).catch((err: { code?: string }) => {
        if (err.code !== 'unavailable' || performance.now() > until) throw err;
        return undefined;
      });
    }
    await a.check('frozen-held', held.token, ALICE);
    await a.release('frozen-held', held.token, ALICE);
    await a.release('frozen-free', after.token, BOB);
  }, 30_000);

  // Last: it restarts the suite's server.
  it('the database restarted: unavailable while it is down, then every live lease and every token is still there', async () => {
    const a = await open();
    const live = await a.acquire({ key: 'restart-live', ttlMs: 60_000, waitMs: 0, owner: ALICE });
    const done = await a.acquire({ key: 'restart-done', ttlMs: 60_000, waitMs: 0, owner: ALICE });
    await a.release('restart-done', done.token, ALICE);
    await server().stop();
    try {
      const started = performance.now();
      expect(await code(a.acquire({ key: 'restart-done', ttlMs: 1_000, waitMs: 0, owner: BOB }))).toBe('unavailable');
      expect(performance.now() - started).toBeLessThan(OP_TIMEOUT_MS + SLACK_MS);
    } finally {
      await server().start();
    }
    // The pool's old connections died with the server: the first statements may still fail.
    const retry = async <T>(fn: () => Promise<T>): Promise<T> => {
      for (let i = 0; ; i++) {
        try {
          return await fn();
        } catch (err) {
          if ((err as { code?: string }).code !== 'unavailable' || i >= 10) throw err;
        }
      }
    };
    await retry(() => a.check('restart-live', live.token, ALICE));
    expect(await code(a.acquire({ key: 'restart-live', ttlMs: 1_000, waitMs: 0, owner: BOB }))).toBe('lock-timeout');
    const again = await retry(() => a.acquire({ key: 'restart-done', ttlMs: 1_000, waitMs: 0, owner: BOB }));
    expect(again.token).toBeGreaterThan(done.token);
  }, 60_000);
});
