import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { storageAdapterConformance } from '@capsync/client/conformance';
import { runConformance } from '../../../test/support/conformance.js';
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

/**
 * Every StorageAdapter runs the conformance suite (@capsync/client/conformance). IndexedDB runs
 * here on fake-indexeddb, each case on a fresh IDBFactory (a fresh browser profile), and in real
 * Chromium in test/browser/storage-conformance.test.ts.
 */
describe('MemoryStorage conformance', () => {
  runConformance(storageAdapterConformance, {
    create: async () => new MemoryStorage(),
    absent: { reload: 'MemoryStorage keeps nothing across a reload (persistent: false)' },
  });
});

describe('IndexedDbStorage (fake-indexeddb) conformance', () => {
  const profiles = new Map<StorageAdapter, IDBFactory>();
  const inProfile = (factory: IDBFactory) => {
    const adapter = new IndexedDbStorage({ factory });
    profiles.set(adapter, factory);
    return adapter;
  };
  runConformance(storageAdapterConformance, {
    create: async () => inProfile(new IDBFactory()),
    reload: async (a) => inProfile(profiles.get(a)!),
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
