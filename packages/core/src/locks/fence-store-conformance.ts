/**
 * The `FenceStore` conformance suite: a store keeps, per key, the highest fencing token a
 * `FencedResource` accepted, so that through it a write with an older token is refused, never
 * applied. Cases drive the store directly and through a `FencedResource` built on it.
 * Runner pattern: see conformance-case.ts.
 */
import { conformanceChecks, required, type ConformanceCase, type HarnessBase } from '../conformance/conformance-case.js';
import { FencedResource, type FenceStore } from './fenced-resource.js';

export interface FenceStoreHarness extends HarnessBase {
  /** A fresh, empty store. */
  create(): Promise<FenceStore>;
  /** Opens the same underlying storage again (a restart). Omit for stores that live in memory. */
  reopen?(store: FenceStore): Promise<FenceStore>;
}

export type FenceStoreCase = ConformanceCase<FenceStoreHarness>;

const { ok, equal, rejectsWith } = conformanceChecks('FenceStore');

export const fenceStoreConformance: FenceStoreCase[] = [
  {
    name: 'an unknown key has no token; a set token reads back, per key',
    run: async (h) => {
      const s = await h.create();
      equal(await s.get('k'), undefined, 'token of an unknown key');
      await s.set('k', 3);
      await s.set('other', 9);
      equal(await s.get('k'), 3, 'token of k');
      equal(await s.get('other'), 9, 'token of another key');
      await s.set('k', 4);
      equal(await s.get('k'), 4, 'token of k after a newer one');
    },
  },
  {
    name: 'through a FencedResource, a write with an older token is refused and not applied; equal and newer ones are',
    run: async (h) => {
      const r = new FencedResource({ store: await h.create() });
      const applied: number[] = [];
      const write = (token: number) => r.write('stock', token, () => void applied.push(token));
      await write(5);
      await write(5);
      await rejectsWith(write(4), 'stale-token', 'a write with an older token');
      await write(7);
      await rejectsWith(write(5), 'stale-token', 'a write with the previous holder’s token');
      equal(applied.join(','), '5,5,7', 'writes applied');
      equal(await r.highest('stock'), 7, 'highest token');
      // Another key has its own sequence.
      await r.write('other', 1, () => void applied.push(1));
      equal(await r.highest('other'), 1, 'highest token of another key');
    },
  },
  {
    name: 'concurrent writes to one key: the applied tokens never go down, and no stale write runs',
    run: async (h) => {
      const r = new FencedResource({ store: await h.create() });
      // A fixed shuffle of tokens 1..40, several of them twice.
      const tokens = Array.from({ length: 60 }, (_, i) => ((i * 37) % 40) + 1);
      const applied: number[] = [];
      const results = await Promise.allSettled(tokens.map((t) => r.write('k', t, async () => void applied.push(t))));
      for (let i = 1; i < applied.length; i++) ok(applied[i]! >= applied[i - 1]!, `token ${applied[i]} applied after ${applied[i - 1]}`);
      const refused = results.filter((x) => x.status === 'rejected').length;
      equal(applied.length + refused, tokens.length, 'every write applied or refused');
      equal(await r.highest('k'), Math.max(...applied), 'highest token is the last applied');
    },
  },
  {
    name: 'a write whose apply failed still holds back older tokens',
    run: async (h) => {
      const r = new FencedResource({ store: await h.create() });
      await r.write('k', 2, () => undefined);
      const failed = await r.write('k', 3, () => Promise.reject(new Error('half-way'))).then(() => null, (e: Error) => e);
      ok(failed?.message === 'half-way', 'the failing apply’s error reaches the caller');
      await rejectsWith(r.write('k', 2, () => undefined), 'stale-token', 'the older holder after a failed newer write');
    },
  },
  {
    name: 'the highest token survives reopening: a stale write after a restart is still refused',
    needs: ['reopen'],
    run: async (h) => {
      const reopen = required(h, 'reopen').bind(h);
      const s = await h.create();
      await new FencedResource({ store: s }).write('k', 8, () => undefined);
      const again = new FencedResource({ store: await reopen(s) });
      equal(await again.highest('k'), 8, 'highest token after reopening');
      await rejectsWith(again.write('k', 7, () => undefined), 'stale-token', 'an older token after reopening');
    },
  },
];
