import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, it, expect } from 'vitest';
import { docStoreConformance } from '@capsync/core/conformance';
import { runConformance } from '../../../test/support/conformance.js';
import { SqliteDocStore } from '../src/storage/sqlite-store.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-sqlite-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

describe('SqliteDocStore conformance', () => {
  runConformance(docStoreConformance, {
    create: async () => new SqliteDocStore(path.join(root, `db-${n++}`, 'capsync.db')),
    reopen: async (store) => {
      await store.close();
      return new SqliteDocStore((store as SqliteDocStore).file);
    },
  });
});

describe('SqliteDocStore specifics', () => {
  it('group-commits appends made in one turn into one transaction', async () => {
    const store = new SqliteDocStore(path.join(root, 'group', 'capsync.db'));
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.append('d', new Uint8Array([0, 0, i]))));
    expect(results.map((r) => r.logCount)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    await store.close();
  });

  it('rejects appends after close with a StorageError instead of throwing', async () => {
    const store = new SqliteDocStore(path.join(root, 'closed', 'capsync.db'));
    await store.close();
    await expect(store.append('d', new Uint8Array([0, 0]))).rejects.toMatchObject({ code: 'storage-failure' });
    await expect(store.ping()).rejects.toMatchObject({ code: 'storage-failure' });
  });

  it('refuses to open a path that is not a database', async () => {
    const file = path.join(root, 'not-a-db');
    fs.writeFileSync(file, 'this is not sqlite'.repeat(100));
    expect(() => new SqliteDocStore(file)).toThrowError(/cannot open SQLite database/);
  });
});
