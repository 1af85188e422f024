import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { docStoreConformance } from '@capsync/core/conformance';
import { runConformance } from '../../../test/support/conformance.js';
import { SqliteWorkerStore } from '../src/storage/sqlite-worker-store.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-sqlite-worker-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

describe('SqliteWorkerStore conformance', () => {
  runConformance(docStoreConformance, {
    create: () => SqliteWorkerStore.open(path.join(root, `db-${n++}`, 'capsync.db')),
    reopen: async (store) => {
      await store.close();
      return SqliteWorkerStore.open((store as SqliteWorkerStore).file);
    },
  });
});

describe('SqliteWorkerStore specifics', () => {
  it('fails to open a file that is not a database, with a StorageError', async () => {
    const file = path.join(root, 'not-a-db');
    fs.writeFileSync(file, 'this is not sqlite'.repeat(100));
    await expect(SqliteWorkerStore.open(file)).rejects.toMatchObject({ code: 'storage-failure', message: expect.stringMatching(/cannot open SQLite database/) });
  });

  it('rejects calls after close', async () => {
    const store = await SqliteWorkerStore.open(path.join(root, 'closed', 'capsync.db'));
    await store.close();
    await expect(store.append('d', new Uint8Array([0, 0]))).rejects.toMatchObject({ code: 'storage-failure' });
  });
});
