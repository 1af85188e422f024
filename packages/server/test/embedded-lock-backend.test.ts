import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isCapsyncError } from '@capsync/core';
import { EmbeddedLockBackend } from '../src/locks/embedded-backend.js';
import { MemoryLockStore, type LockStore } from '../src/locks/lock-store.js';
import { SqliteDocStore } from '../src/storage/sqlite-store.js';

const req = (key: string, ttlMs = 5_000, waitMs = 0, signal?: AbortSignal) => ({ key, ttlMs, waitMs, owner: 'test', ...(signal ? { signal } : {}) });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (isCapsyncError(err)) return err.code;
    throw err;
  }
}

const backends: EmbeddedLockBackend[] = [];
async function open(store: LockStore = new MemoryLockStore()): Promise<EmbeddedLockBackend> {
  const b = await EmbeddedLockBackend.open(store);
  backends.push(b);
  return b;
}
afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
});

describe('EmbeddedLockBackend', () => {
  it('serves waiters first come, first served, with increasing tokens', async () => {
    const b = await open();
    const first = await b.acquire(req('k'));
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) => b.acquire(req('k', 5_000, 5_000)).then((g) => (order.push(n), g)));
    await b.release('k', first.token, 'test');
    const g1 = await waiters[0]!;
    await b.release('k', g1.token, 'test');
    const g2 = await waiters[1]!;
    await b.release('k', g2.token, 'test');
    const g3 = await waiters[2]!;
    expect(order).toEqual([1, 2, 3]);
    expect([first.token, g1.token, g2.token, g3.token]).toEqual([1, 2, 3, 4]);
  });

  it('times out waiters, withdraws aborted ones, and refuses releases and renewals of leases it does not hold', async () => {
    const b = await open();
    const held = await b.acquire(req('k'));
    expect(await codeOf(b.acquire(req('k')))).toBe('lock-timeout');
    expect(await codeOf(b.acquire(req('k', 5_000, 20)))).toBe('lock-timeout');
    const abort = new AbortController();
    const withdrawn = b.acquire(req('k', 5_000, 5_000, abort.signal));
    abort.abort();
    expect(await codeOf(withdrawn)).toBe('unavailable');
    expect(await codeOf(b.release('k', held.token + 1, 'test'))).toBe('lease-lost');
    expect(await codeOf(b.renew('k', held.token + 1, 1_000, 'test'))).toBe('lease-lost');
    await b.release('k', held.token, 'test');
    // The withdrawn waiter got nothing: the key is free.
    const next = await b.acquire(req('k'));
    expect(next.token).toBe(held.token + 1);
    expect(await codeOf(b.check('k', held.token, 'test'))).toBe('stale-token');
    expect(await codeOf(b.check('k', next.token, 'test'))).toBe('ok');
  });

  it('expires unrenewed leases (never early), emits expired, and hands the key to the next waiter', async () => {
    const b = await open();
    const expired: number[] = [];
    b.on('expired', (_key, token) => expired.push(token));
    const started = performance.now();
    const g = await b.acquire(req('k', 50));
    const next = await b.acquire(req('k', 5_000, 5_000));
    expect(performance.now() - started).toBeGreaterThanOrEqual(50);
    expect(expired).toEqual([g.token]);
    expect(next.token).toBe(g.token + 1);
    expect(await codeOf(b.renew('k', g.token, 1_000, 'test'))).toBe('lease-lost');
    // Renewal moves the deadline.
    await b.renew('k', next.token, 60_000, 'test');
    expect(await codeOf(b.check('k', next.token, 'test'))).toBe('ok');
  });

  it('persists tokens and leases in SQLite: a restart keeps live leases and never reuses a token', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-locks-'));
    try {
      const file = path.join(dir, 'capsync.db');
      let store = new SqliteDocStore(file);
      let b = await open(store.locks);
      const live = await b.acquire(req('live', 60_000));
      const short = await b.acquire(req('short', 10));
      const done = await b.acquire(req('done'));
      await b.release('done', done.token, 'test');
      await b.close();
      await store.close();
      await new Promise((resolve) => setTimeout(resolve, 20)); // let 'short' run out across the restart

      store = new SqliteDocStore(file);
      b = await open(store.locks);
      expect(await codeOf(b.acquire(req('live')))).toBe('lock-timeout');
      expect(await codeOf(b.check('live', live.token, 'test'))).toBe('ok');
      const s2 = await b.acquire(req('short'));
      expect(s2.token).toBe(short.token + 1);
      const d2 = await b.acquire(req('done'));
      expect(d2.token).toBe(done.token + 1);
      await b.release('live', live.token, 'test');
      expect((await b.acquire(req('live'))).token).toBe(live.token + 1);
      await b.close();
      await store.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a lease is its owner\'s: another owner\'s renew, release and check are refused not-owner and change nothing, also after a restart; no message names the token', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-locks-'));
    try {
      const file = path.join(dir, 'capsync.db');
      let store = new SqliteDocStore(file);
      let b = await open(store.locks);
      const alice = await b.acquire({ key: 'stock', ttlMs: 60_000, waitMs: 0, owner: 'sub:alice' });
      const refusals: Error[] = [];
      const refused = async (p: Promise<unknown>) => {
        const err = await p.then(() => null, (e: Error) => e);
        if (err) refusals.push(err);
        return err && isCapsyncError(err) ? err.code : 'ok';
      };
      const tryAll = async (backend: EmbeddedLockBackend) => {
        expect(await refused(backend.renew('stock', alice.token, 3_600_000, 'sub:bob'))).toBe('not-owner');
        expect(await refused(backend.release('stock', alice.token, 'sub:bob'))).toBe('not-owner');
        expect(await refused(backend.check('stock', alice.token, 'sub:bob'))).toBe('not-owner');
        expect(await refused(backend.acquire({ key: 'stock', ttlMs: 1_000, waitMs: 0, owner: 'sub:bob' }))).toBe('lock-timeout');
        // Nothing changed: still alice's, at its deadline.
        expect(await refused(backend.check('stock', alice.token, 'sub:alice'))).toBe('ok');
      };
      await tryAll(b);
      await b.close();
      await store.close();

      // The owner is persisted with the lease.
      store = new SqliteDocStore(file);
      b = await open(store.locks);
      await tryAll(b);
      await b.renew('stock', alice.token, 60_000, 'sub:alice');
      await b.release('stock', alice.token, 'sub:alice');
      const bob = await b.acquire({ key: 'stock', ttlMs: 60_000, waitMs: 0, owner: 'sub:bob' });
      // A stale token's refusal does not name the newer one.
      for (const err of refusals) expect(err.message).not.toMatch(new RegExp(`\\b${alice.token}\\b`));
      const stale = await b.check('stock', alice.token, 'sub:alice').then(() => null, (e: Error) => e);
      expect(stale).toMatchObject({ code: 'stale-token' });
      expect(stale!.message).not.toMatch(new RegExp(`\\b${bob.token}\\b`));
      await b.close();
      await store.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('forgets idle keys (memory stays bounded) and still never reuses a token', async () => {
    const b = await open();
    for (let i = 0; i < 1_000; i++) {
      const g = await b.acquire(req(`order-${i}`));
      await b.release(g.key, g.token, 'test');
    }
    expect(b.activeKeys).toBe(0);
    const again = await b.acquire(req('order-7'));
    expect(again.token).toBe(2);
    expect(b.activeKeys).toBe(1);
  });

  it('counts a waited grant from the request\'s receipt: the TTL plus the wait', async () => {
    const b = await open();
    const first = await b.acquire(req('k'));
    const waiting = b.acquire(req('k', 100, 5_000));
    const receivedAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 150)); // the holder keeps it for a while
    await b.release('k', first.token, 'test');
    const g = await waiting;
    expect(g.ttlMs).toBeGreaterThanOrEqual(100 + Math.floor(performance.now() - receivedAt) - 20);
  });

  it('answers unavailable, and grants nothing, when its store fails', async () => {
    const store = new MemoryLockStore();
    const b = await open(store);
    store.grant = () => Promise.reject(new Error('disk gone'));
    expect(await codeOf(b.acquire(req('k')))).toBe('unavailable');
    expect(await codeOf(b.check('k', 1, 'test'))).toBe('lease-lost');
  });
});
