/**
 * The `LockStore` conformance suite: the durable state of the embedded lock authority (the
 * contract in lock-store.ts). Hard promises: a key's tokens start at 1 and strictly increase,
 * also when grants race and across reopening (never reused, never lowered); renew and end
 * touch a lease only while it still has the given token. Runner pattern: see
 * `@capsync/core/conformance` (conformance-case.ts).
 */
import { conformanceChecks, required, type ConformanceCase, type HarnessBase } from '@capsync/core/conformance';
import type { LockStore, PersistedLease } from './lock-store.js';

export interface LockStoreHarness extends HarnessBase {
  /** A fresh, empty store. */
  create(): Promise<LockStore>;
  /** Closes `store` and opens the same storage again (a relay restart). Omit for memory. */
  reopen?(store: LockStore): Promise<LockStore>;
  /** Releases what `create`/`reopen` opened, after each case. */
  dispose?(store: LockStore): Promise<void>;
}

export type LockStoreCase = ConformanceCase<LockStoreHarness>;

const { ok, equal } = conformanceChecks('LockStore');

async function withStore(h: LockStoreHarness, fn: (s: LockStore) => Promise<LockStore | void>): Promise<void> {
  let store = await h.create();
  try {
    store = (await fn(store)) ?? store;
  } finally {
    await h.dispose?.(store);
  }
}

function leaseOf(state: { leases: PersistedLease[] }, key: string): PersistedLease | undefined {
  return state.leases.find((l) => l.key === key);
}

function lastToken(state: { lastTokens: [string, number][] }, key: string): number | undefined {
  return state.lastTokens.find(([k]) => k === key)?.[1];
}

export const lockStoreConformance: LockStoreCase[] = [
  {
    name: 'an empty store loads no leases and no tokens',
    run: (h) =>
      withStore(h, async (s) => {
        const state = await s.loadLocks();
        equal(state.leases.length, 0, 'leases');
        equal(state.lastTokens.length, 0, 'tokens');
      }),
  },
  {
    name: 'grant takes the key’s next token (from 1, per key) and records the lease, replacing the previous one',
    run: (h) =>
      withStore(h, async (s) => {
        equal(await s.grant('k', 'sub:alice', 1_000), 1, 'first token of k');
        equal(await s.grant('other', 'sub:bob', 2_000), 1, 'first token of another key');
        equal(await s.grant('k', 'sub:bob', 3_000), 2, 'second token of k');
        const state = await s.loadLocks();
        const lease = leaseOf(state, 'k');
        equal(state.leases.filter((l) => l.key === 'k').length, 1, 'lease rows of k');
        equal(lease?.token, 2, 'lease token of k');
        equal(lease?.owner, 'sub:bob', 'lease owner of k');
        equal(lease?.expiresAt, 3_000, 'lease expiry of k');
        equal(lastToken(state, 'k'), 2, 'last token of k');
        equal(leaseOf(state, 'other')?.owner, 'sub:bob', 'lease owner of the other key');
      }),
  },
  {
    name: 'renew and end act only on the lease that still has the token; ending keeps the token sequence',
    run: (h) =>
      withStore(h, async (s) => {
        const t1 = await s.grant('k', 'sub:alice', 1_000);
        await s.renew('k', t1 + 1, 9_999);
        equal(leaseOf(await s.loadLocks(), 'k')?.expiresAt, 1_000, 'expiry after a renew with another token');
        await s.renew('k', t1, 5_000);
        equal(leaseOf(await s.loadLocks(), 'k')?.expiresAt, 5_000, 'expiry after a renew');
        await s.end('k', t1 + 1);
        ok(leaseOf(await s.loadLocks(), 'k'), 'the lease is still there after an end with another token');
        await s.end('k', t1);
        ok(!leaseOf(await s.loadLocks(), 'k'), 'the lease is gone after its end');
        await s.end('k', t1); // ending twice changes nothing
        equal(lastToken(await s.loadLocks(), 'k'), t1, 'last token after the end');
        equal(await s.grant('k', 'sub:alice', 1_000), t1 + 1, 'next token after an end');
      }),
  },
  {
    name: 'concurrent grants on one key get distinct, consecutive tokens',
    run: (h) =>
      withStore(h, async (s) => {
        const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => s.grant('k', `sub:${i}`, 1_000 + i)));
        equal([...tokens].sort((a, b) => a - b).join(','), Array.from({ length: 50 }, (_, i) => i + 1).join(','), 'tokens');
        const state = await s.loadLocks();
        equal(lastToken(state, 'k'), 50, 'last token');
        equal(leaseOf(state, 'k')?.token, 50, 'the lease is the last grant');
      }),
  },
  {
    name: 'tokens, leases and owners survive reopening; the sequence continues, never reused',
    needs: ['reopen'],
    run: (h) =>
      withStore(h, async (s) => {
        const reopen = required(h, 'reopen').bind(h);
        const live = await s.grant('live', 'sub:alice', 123_456);
        const done = await s.grant('done', 'sub:bob', 1_000);
        await s.end('done', done);
        const again = await reopen(s);
        const state = await again.loadLocks();
        const lease = leaseOf(state, 'live');
        equal(lease?.token, live, 'live lease token after reopening');
        equal(lease?.owner, 'sub:alice', 'live lease owner after reopening');
        equal(lease?.expiresAt, 123_456, 'live lease expiry after reopening');
        ok(!leaseOf(state, 'done'), 'an ended lease stays ended after reopening');
        equal(await again.grant('done', 'sub:bob', 1_000), done + 1, 'next token of an ended key after reopening');
        equal(await again.grant('live', 'sub:bob', 1_000), live + 1, 'next token of a live key after reopening');
        return again;
      }),
  },
];
