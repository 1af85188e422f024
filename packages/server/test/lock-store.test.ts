/** Every LockStore runs the LockStore conformance suite: memory, SQLite, and SQLite in its worker. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe } from 'vitest';
import { lockStoreConformance } from '@capsync/server/conformance';
import { MemoryLockStore, type LockStore } from '../src/locks/lock-store.js';
import { SqliteDocStore } from '../src/storage/sqlite-store.js';
import { SqliteWorkerStore } from '../src/storage/sqlite-worker-store.js';
import { runConformance } from '../../../test/support/conformance.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-lock-store-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

describe('MemoryLockStore conformance', () => {
  runConformance(lockStoreConformance, {
    create: async () => new MemoryLockStore(),
    absent: { reopen: 'a MemoryLockStore keeps nothing past its process (storage: memory relays)' },
  });
});

/** The LockStore of a SQLite document store (`locks`), keyed back to its store to close and reopen it. */
function sqliteHarness<S extends { locks: LockStore; file: string; close(): Promise<void> }>(open: (file: string) => Promise<S>) {
  const owners = new Map<LockStore, S>();
  const track = (s: S) => (owners.set(s.locks, s), s.locks);
  return {
    create: async () => track(await open(path.join(root, `db-${n++}`, 'capsync.db'))),
    reopen: async (locks: LockStore) => {
      const s = owners.get(locks)!;
      await s.close();
      return track(await open(s.file));
    },
    dispose: async (locks: LockStore) => owners.get(locks)?.close(),
  };
}

describe('SqliteLockTables (SqliteDocStore.locks) conformance', () => {
  runConformance(lockStoreConformance, sqliteHarness(async (file) => new SqliteDocStore(file)));
});

describe('SqliteWorkerStore.locks conformance', () => {
  runConformance(lockStoreConformance, sqliteHarness((file) => SqliteWorkerStore.open(file)));
});
