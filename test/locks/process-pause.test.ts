/**
 * Process pauses, the case fencing exists for. A lock holder frozen with SIGSTOP past its TTL
 * wakes up believing nothing happened; a relay frozen past its clients' TTLs wakes up with
 * leases that ran out. Real processes, real SIGSTOP/SIGCONT.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FencedResource, isCapsyncError } from '@capsync/core';
import { LockWorker, type WorkerReply } from '../support/lock-worker.js';
import { RestartableRelay } from '../support/restartable-relay.js';

const LOCK_TIMEOUT_MS = 400;
let relay: RestartableRelay;
const workers: LockWorker[] = [];

beforeAll(async () => {
  relay = await RestartableRelay.start();
  workers.push(...(await Promise.all([LockWorker.start(relay.url, LOCK_TIMEOUT_MS), LockWorker.start(relay.url, LOCK_TIMEOUT_MS)])));
});
afterAll(async () => {
  relay.resume();
  await Promise.all(workers.map((w) => w.stop()));
  await relay.dispose();
});

function token(r: WorkerReply): number {
  if (!r.ok || r.token === undefined) throw new Error(`expected a grant, got ${JSON.stringify(r)}`);
  return r.token;
}

/** Resolves after `ms` of wall-clock time: the nemesis itself (a pause must last past the TTL). */
const pauseFor = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('process pause', () => {
  it('a holder frozen past its TTL cannot write when it wakes: the relay and a FencedResource refuse its token', async () => {
    const [a, b] = workers as [LockWorker, LockWorker];
    const resource = new FencedResource();
    const tA = token(await a.call({ cmd: 'acquire', key: 'sku', ttlMs: 300, waitMs: 0 }));
    expect(await a.call({ cmd: 'cp-set', doc: 'store', key: 'sku', value: 10, token: tA })).toEqual({ id: expect.any(Number), ok: true });
    await resource.write('sku', tA, () => 'a');

    a.pause();
    // B waits for the lock: the relay gives it away only once A's lease ran out.
    const started = performance.now();
    const tB = token(await b.call({ cmd: 'acquire', key: 'sku', ttlMs: 5_000, waitMs: 3_000 }));
    expect(tB).toBeGreaterThan(tA);
    expect(performance.now() - started).toBeLessThan(300 + 200);
    expect((await b.call({ cmd: 'cp-set', doc: 'store', key: 'sku', value: 9, token: tB })).ok).toBe(true);
    await resource.write('sku', tB, () => 'b');

    a.resume();
    // A wakes: the client library itself refuses to use the lost lease...
    const checked = await a.call({ cmd: 'cp-set', doc: 'store', key: 'sku', value: 1_000, token: tA });
    expect(checked).toMatchObject({ ok: false, code: 'local-lease-lost' });
    // ...and a write that was already in hand when A froze goes out anyway: the relay refuses it.
    const late = await a.call({ cmd: 'cp-set-raw', doc: 'store', key: 'sku', value: 1_000, token: tA });
    expect(late).toMatchObject({ ok: false, code: 'stale-token' });
    const stale = await resource.write('sku', tA, () => 'a-late').catch((e: unknown) => e);
    expect(isCapsyncError(stale, 'stale-token')).toBe(true);
    // Everyone reads B's value.
    const seen = await a.call({ cmd: 'cp-get', doc: 'store', key: 'sku' });
    expect(seen).toMatchObject({ ok: true, value: { value: 9, token: tB } });
    expect(a.lost.map((l) => l.token)).toContain(tA);
    expect((await b.call({ cmd: 'release', key: 'sku', token: tB })).ok).toBe(true);
  });

  it('a relay frozen past the TTL: requests fail fast with unavailable, leases are lost locally on time, and it grants again on waking', async () => {
    const [a, b] = workers as [LockWorker, LockWorker];
    const acquiredAt = performance.now();
    const tA = token(await a.call({ cmd: 'acquire', key: 'frozen', ttlMs: 300, waitMs: 0 }));
    relay.pause();
    try {
      const started = performance.now();
      const r = await b.call({ cmd: 'acquire', key: 'frozen', ttlMs: 1_000, waitMs: 0 });
      const took = performance.now() - started;
      expect(r).toMatchObject({ ok: false, code: 'unavailable' });
      expect(took).toBeLessThan(LOCK_TIMEOUT_MS + 250);
      // A's lease is lost at its local deadline, while the relay is still frozen.
      const renew = await a.call({ cmd: 'renew', key: 'frozen', token: tA });
      expect(renew.ok).toBe(false);
      expect(a.lost.find((l) => l.token === tA && l.key === 'frozen')!.at - acquiredAt).toBeLessThan(300 + 100);
      await pauseFor(Math.max(0, acquiredAt + 500 - performance.now()));
    } finally {
      relay.resume();
    }
    const tB = token(await b.call({ cmd: 'acquire', key: 'frozen', ttlMs: 1_000, waitMs: 2_000 }));
    expect(tB).toBeGreaterThan(tA);
    expect((await b.call({ cmd: 'release', key: 'frozen', token: tB })).ok).toBe(true);
  });
});
