import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { compactLog } from '../src/storage/compact-log.js';
import { IndexedDbStorage } from '../src/storage/indexeddb-storage.js';
import { MemoryStorage } from '../src/storage/memory-storage.js';
import type { StorageAdapter, StoredUpdate } from '../src/storage/storage-adapter.js';

/** Updates typing `text` one character per update into text "t". */
function typing(text: string): StoredUpdate[] {
  const doc = new Y.Doc();
  const out: StoredUpdate[] = [];
  doc.on('update', (u: Uint8Array) => out.push({ data: u, format: 'v1' }));
  for (const ch of text) doc.getText('t').insert(doc.getText('t').length, ch);
  return out;
}

function textOf(log: StoredUpdate[]): string {
  const doc = new Y.Doc();
  for (const row of log) (row.format === 'v2' ? Y.applyUpdateV2 : Y.applyUpdate)(doc, row.data);
  return doc.getText('t').toString();
}

const adapters: [string, () => StorageAdapter][] = [
  ['memory', () => new MemoryStorage()],
  ['indexeddb (fake-indexeddb)', () => new IndexedDbStorage({ factory: new IDBFactory() })],
];

describe.each(adapters)('StorageAdapter contract: %s', (_name, make) => {
  it('stores updates and outbox records atomically and loads them back after reopening', async () => {
    const storage = make();
    const store = await storage.open('doc');
    const rows = typing('abc');
    await store.write({ updates: rows, putOutbox: [{ key: 'k1', count: 3 }], deleteOutbox: [] });
    store.close();
    const again = await storage.open('doc');
    const loaded = await again.load();
    expect(textOf(loaded.updates)).toBe('abc');
    expect(loaded.outbox).toEqual([{ key: 'k1', count: 3 }]);
    await again.write({ updates: [], putOutbox: [{ key: 'k1', count: 1 }], deleteOutbox: [] });
    expect((await again.load()).outbox).toEqual([{ key: 'k1', count: 1 }]);
    await again.write({ updates: [], putOutbox: [], deleteOutbox: ['k1'] });
    expect((await again.load()).outbox).toEqual([]);
    again.close();
  });

  it('keeps documents apart and clears one or all of them', async () => {
    const storage = make();
    const a = await storage.open('a');
    const b = await storage.open('b');
    await a.write({ updates: typing('A'), putOutbox: [], deleteOutbox: [] });
    await b.write({ updates: typing('B'), putOutbox: [], deleteOutbox: [] });
    a.close();
    b.close();
    await storage.clear('a');
    expect((await (await storage.open('a')).load()).updates).toEqual([]);
    expect(textOf((await (await storage.open('b')).load()).updates)).toBe('B');
    await storage.clear();
    expect((await (await storage.open('b')).load()).updates).toEqual([]);
  });

  it('compacts the log into one smaller snapshot with the same content, and keeps later rows', async () => {
    const storage = make();
    const store = await storage.open('doc');
    const rows = typing('hello world');
    await store.write({ updates: rows, putOutbox: [], deleteOutbox: [] });
    const { before, after } = await store.compact(compactLog);
    expect(before.updates).toBe(rows.length);
    expect(after.updates).toBe(1);
    expect(after.bytes).toBeLessThan(before.bytes);
    const more = new Y.Doc();
    Y.applyUpdate(more, Y.mergeUpdates(rows.map((r) => r.data)));
    const later: Uint8Array[] = [];
    more.on('update', (u: Uint8Array) => later.push(u));
    more.getText('t').insert(11, '!');
    await store.write({ updates: later.map((data) => ({ data, format: 'v1' as const })), putOutbox: [], deleteOutbox: [] });
    expect(textOf((await store.load()).updates)).toBe('hello world!');
    expect(await store.size()).toEqual({ updates: 2, bytes: expect.any(Number) });
    store.close();
  });
});

describe('compactLog', () => {
  it('never returns a snapshot larger than the log it replaces', () => {
    const one = typing('x');
    expect(compactLog(one)).toBeNull();
    // Two copies of the same content: the snapshot is about half.
    const twice = [...typing('same'), ...typing('same')];
    const merged = compactLog(twice);
    expect(merged?.format).toBe('v2');
    expect(textOf([merged!])).toContain('same');
  });

  it('keeps the log when it cannot be loaded', () => {
    expect(compactLog([{ data: new Uint8Array([1, 2, 3]), format: 'v1' }, { data: new Uint8Array([9]), format: 'v1' }])).toBeNull();
  });

  it('garbage-collects deleted text, so a typed-and-erased log shrinks far below its raw size', () => {
    const doc = new Y.Doc();
    const rows: StoredUpdate[] = [];
    doc.on('update', (u: Uint8Array) => rows.push({ data: u, format: 'v1' }));
    const t = doc.getText('t');
    for (let i = 0; i < 200; i++) t.insert(t.length, 'word ');
    t.delete(0, 900);
    const merged = compactLog(rows)!;
    expect(textOf([merged])).toBe(t.toString());
    expect(merged.data.byteLength).toBeLessThanOrEqual(Math.ceil(1.2 * Y.encodeStateAsUpdateV2(doc).byteLength));
  });
});
