import { execFileSync } from 'node:child_process';
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

describe('SqliteWorkerStore worker entry', () => {
  const pkg = path.resolve(import.meta.dirname, '..');
  const resolveIn = (conditions: string[]): string =>
    execFileSync(process.execPath, [...conditions, '--input-type=module', '-e', "process.stdout.write(import.meta.resolve('@capsync/server/sqlite-worker'))"], { cwd: pkg, encoding: 'utf8' });

  it('is the built worker without the source condition, and the development bootstrap with it', () => {
    expect(resolveIn([])).toMatch(/\/packages\/server\/dist\/storage\/sqlite-worker\.js$/);
    expect(resolveIn(['--conditions=source'])).toMatch(/\/packages\/server\/dev\/sqlite-worker\.mjs$/);
  });

  it('no production module loads a TypeScript loader (tsx is a development dependency)', () => {
    const files = fs.readdirSync(path.join(pkg, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const loading = files.filter((f) => /['"`]tsx(\/[^'"`]*)?['"`]/.test(fs.readFileSync(path.join(pkg, 'src', f), 'utf8')));
    expect(loading).toEqual([]);
  });
});
