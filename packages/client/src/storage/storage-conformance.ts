/**
 * The `StorageAdapter` / `ReplicaStore` conformance suite: the contract in storage-adapter.ts,
 * case by case, for every adapter (memory, IndexedDB, your own). Hard promises: a write commits
 * all of its rows and outbox records or none, rows load back byte-exact in write order, and
 * compaction never loses a row, also when two tabs write and compact one replica at once.
 * Runner pattern: see `@capsync/core/conformance` (conformance-case.ts).
 */
import * as Y from 'yjs';
import { conformanceChecks, required, type ConformanceCase, type HarnessBase } from '@capsync/core/conformance';
import { compactLog } from './compact-log.js';
import type { ReplicaStore, StorageAdapter, StoredUpdate } from './storage-adapter.js';

export interface StorageAdapterHarness extends HarnessBase {
  /** A fresh adapter holding no replicas (a new browser profile). */
  create(): Promise<StorageAdapter>;
  /**
   * The same storage as `adapter` after a page reload (a new adapter). Omit for adapters that
   * keep nothing across a reload (`persistent: false`); the reload case is then skipped.
   */
  reload?(adapter: StorageAdapter): Promise<StorageAdapter>;
}

export type StorageAdapterCase = ConformanceCase<StorageAdapterHarness>;

const { ok, equal, bytesEqual } = conformanceChecks('StorageAdapter');
const NO_OUTBOX = { putOutbox: [], deleteOutbox: [] };

/** Rows writing `keys` into map "m" of a document of its own (its own client id: one writer, one tab). */
/** Writers made so far: each gets its own client id (see writerOf). */
let writers = 0;

function writerOf(): { rows(...keys: string[]): StoredUpdate[] } {
  const doc = new Y.Doc();
  // Distinct and large, not random: whether compacting a few rows makes them smaller depends on
  // the client id's size (3% of random ids, those under 2^28, did not, and the cases that expect
  // a compaction failed at random); ids near 2^31 always compact.
  doc.clientID = 2 ** 31 - 1 - writers++;
  return {
    rows(...keys) {
      const out: StoredUpdate[] = [];
      const capture = (u: Uint8Array) => out.push({ data: u, format: 'v1' });
      doc.on('update', capture);
      for (const k of keys) doc.getMap('m').set(k, k);
      doc.off('update', capture);
      return out;
    },
  };
}

/** The keys of map "m" in the document a log rebuilds. */
function keysOf(log: StoredUpdate[]): string[] {
  const doc = new Y.Doc();
  for (const row of log) (row.format === 'v2' ? Y.applyUpdateV2 : Y.applyUpdate)(doc, row.data);
  return [...doc.getMap('m').keys()].sort();
}

async function withAdapter(h: StorageAdapterHarness, fn: (a: StorageAdapter, opened: ReplicaStore[]) => Promise<void>): Promise<void> {
  const a = await h.create();
  const opened: ReplicaStore[] = [];
  try {
    await fn(a, opened);
  } finally {
    for (const s of opened) s.close();
    await a.clear();
  }
}

export const storageAdapterConformance: StorageAdapterCase[] = [
  {
    name: 'an unknown replica opens empty',
    run: (h) =>
      withAdapter(h, async (a, opened) => {
        const s = await a.open('nothing-here');
        opened.push(s);
        const loaded = await s.load();
        equal(loaded.updates.length, 0, 'rows');
        equal(loaded.outbox.length, 0, 'outbox records');
        const size = await s.size();
        equal(size.updates, 0, 'size.updates');
        equal(size.bytes, 0, 'size.bytes');
      }),
  },
  {
    name: 'rows and outbox records of a write load back after closing and reopening: rows byte-exact, in order, formats kept',
    run: (h) =>
      withAdapter(h, async (a, opened) => {
        const w = writerOf();
        const rows = [...w.rows('a', 'b'), { data: Y.encodeStateAsUpdateV2(new Y.Doc()), format: 'v2' as const }, ...w.rows('c')];
        const s = await a.open('doc');
        await s.write({ updates: rows.slice(0, 2), putOutbox: [{ key: 'k1', count: 2 }], deleteOutbox: [] });
        await s.write({ updates: rows.slice(2), putOutbox: [{ key: 'k2', count: 1 }], deleteOutbox: [] });
        s.close();
        const again = await a.open('doc');
        opened.push(again);
        const loaded = await again.load();
        equal(loaded.updates.length, rows.length, 'rows');
        rows.forEach((r, i) => {
          bytesEqual(loaded.updates[i]!.data, r.data, `row ${i}`);
          equal(loaded.updates[i]!.format, r.format, `format of row ${i}`);
        });
        equal(JSON.stringify([...loaded.outbox].sort((x, y) => x.key.localeCompare(y.key))), '[{"key":"k1","count":2},{"key":"k2","count":1}]', 'outbox');
        await again.write({ updates: [], putOutbox: [{ key: 'k1', count: 1 }], deleteOutbox: ['k2'] });
        equal(JSON.stringify((await again.load()).outbox), '[{"key":"k1","count":1}]', 'outbox after a put and a delete');
        const size = await again.size();
        equal(size.updates, rows.length, 'size.updates');
        equal(size.bytes, rows.reduce((n, r) => n + r.data.byteLength, 0), 'size.bytes');
      }),
  },
  {
    name: 'replicas are kept apart; clear deletes one replica, or every one',
    run: (h) =>
      withAdapter(h, async (a, opened) => {
        for (const name of ['a', 'a/b', 'ünï/文档']) {
          const s = await a.open(name);
          await s.write({ updates: writerOf().rows(name), ...NO_OUTBOX });
          s.close();
        }
        await a.clear('a');
        const read = async (name: string) => {
          const s = await a.open(name);
          opened.push(s);
          return keysOf((await s.load()).updates).join(',');
        };
        equal(await read('a'), '', 'cleared replica');
        equal(await read('a/b'), 'a/b', 'replica a/b');
        equal(await read('ünï/文档'), 'ünï/文档', 'replica ünï/文档');
        for (const s of opened.splice(0)) s.close();
        await a.clear();
        equal(await read('a/b'), '', 'replica a/b after clearing all');
      }),
  },
  {
    name: 'compact hands merge the whole log and replaces it with the result; null leaves it; outbox records stay',
    run: (h) =>
      withAdapter(h, async (a, opened) => {
        const s = await a.open('doc');
        opened.push(s);
        const rows = writerOf().rows('a', 'b', 'c');
        await s.write({ updates: rows, putOutbox: [{ key: 'k', count: 3 }], deleteOutbox: [] });
        let seen = -1;
        const kept = await s.compact((log) => ((seen = log.length), null));
        equal(seen, 3, 'rows merge saw');
        equal(kept.after.updates, 3, 'rows after a null merge');
        const { before, after } = await s.compact(compactLog);
        equal(before.updates, 3, 'before.updates');
        equal(after.updates, 1, 'after.updates');
        const loaded = await s.load();
        equal(loaded.updates.length, 1, 'rows after compaction');
        equal(keysOf(loaded.updates).join(','), 'a,b,c', 'content after compaction');
        equal(JSON.stringify(loaded.outbox), '[{"key":"k","count":3}]', 'outbox after compaction');
      }),
  },
  {
    name: 'two tabs writing and compacting one replica at once never lose a row',
    run: (h) =>
      withAdapter(h, async (a, opened) => {
        const tabs = [await a.open('doc'), await a.open('doc')];
        opened.push(...tabs);
        const writers = [writerOf(), writerOf()];
        const expected: string[] = [];
        // Every call fired without awaiting, in several orders: a write of one tab lands before,
        // between or after the other tab's compaction reads and replaces the log.
        for (let round = 0; round < 8; round++) {
          const calls: Promise<unknown>[] = [];
          for (let i = 0; i < 6; i++) {
            const t = (round + i) % 2;
            const key = `t${t}-r${round}-${i}`;
            expected.push(key);
            calls.push(tabs[t]!.write({ updates: writers[t]!.rows(key), putOutbox: [{ key, count: 1 }], deleteOutbox: [] }));
            if ((i + round) % 3 === 0) calls.push(tabs[1 - t]!.compact(compactLog));
          }
          await Promise.all(calls);
          if (round % 2 === 1) await Promise.all(tabs.map((t) => t.compact(compactLog)));
          const seenBy = await Promise.all(tabs.map(async (t) => keysOf((await t.load()).updates).join(',')));
          equal(seenBy[0], [...expected].sort().join(','), `rows seen by tab 1 after round ${round}`);
          equal(seenBy[1], seenBy[0], `rows seen by tab 2 after round ${round}`);
        }
        equal((await tabs[0]!.load()).outbox.length, expected.length, 'outbox records');
      }),
  },
  {
    name: 'rows and outbox records survive a reload',
    needs: ['reload'],
    run: (h) =>
      withAdapter(h, async (a, opened) => {
        const reload = required(h, 'reload').bind(h);
        const s = await a.open('doc');
        await s.write({ updates: writerOf().rows('a', 'b'), putOutbox: [{ key: 'k', count: 2 }], deleteOutbox: [] });
        await s.compact(compactLog);
        await s.write({ updates: writerOf().rows('c'), ...NO_OUTBOX });
        s.close();
        const after = await (await reload(a)).open('doc');
        opened.push(after);
        const loaded = await after.load();
        equal(keysOf(loaded.updates).join(','), 'a,b,c', 'content after a reload');
        equal(JSON.stringify(loaded.outbox), '[{"key":"k","count":2}]', 'outbox after a reload');
        ok(loaded.updates.length === 2, `rows after a reload: ${loaded.updates.length}, expected the snapshot and one row`);
      }),
  },
];
