import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { DocStore } from '@capsync/core';
import { docStoreConformance } from '@capsync/core/conformance';
import { runConformance } from '../../../test/support/conformance.js';
import { describePostgres } from '../../../test/support/describe-postgres.js';
import { freePorts } from '../../../test/support/free-ports.js';
import { MIGRATIONS, migrate, SCHEMA_VERSION } from '../src/storage/postgres-schema.js';
import { PostgresDocStore } from '../src/storage/postgres-store.js';

/** The URL each store was opened with (the store keeps only a redacted one). */
const urls = new WeakMap<DocStore, string>();
async function open(url: string): Promise<PostgresDocStore> {
  const store = await PostgresDocStore.open(url);
  urls.set(store, url);
  return store;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describePostgres('PostgresDocStore (a real PostgreSQL)', (server) => {
  const open_: PostgresDocStore[] = [];
  afterAll(async () => {
    await Promise.all(open_.map((s) => s.close()));
  });

  // A fresh database per case; reopening connects again to the same one.
  runConformance(docStoreConformance, {
    create: async () => open(await server().createDatabase()),
    reopen: async (store) => {
      await store.close();
      return open(urls.get(store)!);
    },
  });

  it('group-commits the appends of one turn, positions in call order', async () => {
    const store = await open(await server().createDatabase());
    open_.push(store);
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.append(i % 2 ? 'a' : 'b', new Uint8Array([0, 0, i]))));
    expect(results.filter((_, i) => i % 2).map((r) => r.logCount)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const positions = results.map((r) => r.position);
    expect(positions).toEqual([...positions].sort((x, y) => x - y));
    expect((await store.load('a')).updates.map((u) => u[2])).toEqual(Array.from({ length: 50 }, (_, i) => 2 * i + 1));
  });

  it('runs its writes in call order: an append called after a delete or a compaction is committed after it', async () => {
    const store = await open(await server().createDatabase());
    open_.push(store);
    const done = [store.append('d', new Uint8Array([0, 0, 1])), store.delete('d'), store.append('d', new Uint8Array([0, 0, 2]))];
    const [, , second] = await Promise.all(done);
    expect((await store.load('d')).updates.map((u) => u[2])).toEqual([2]);
    // Compacting through the last position, with an append called right after it: that one stays.
    const through = (second as { position: number }).position;
    await Promise.all([store.compact('d', new Uint8Array([0, 0, 9]), through), store.append('d', new Uint8Array([0, 0, 3]))]);
    expect((await store.load('d')).updates.map((u) => u[2])).toEqual([9, 3]);
  });

  it('commits a client id claim before an append called after it, also while a batch waits behind a write in flight', async () => {
    const url = await server().createDatabase();
    const store = await open(url);
    open_.push(store);
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    const first = store.append('other', new Uint8Array([0, 0, 1]));
    await turn(); // its INSERT is in flight
    const waiting = store.append('other', new Uint8Array([0, 0, 2]));
    await turn(); // this batch waits behind it
    const claim = store.claimClients('d', 'alice', [42]);
    const append = store.append('d', new Uint8Array([0, 0, 3]));
    await Promise.all([first, waiting, claim, append]);
    // Writes run one at a time, so transaction ids follow commit order.
    const xid = (sql: string) => withClient(url, async (c) => Number((await c.query<{ xid: string }>(sql)).rows[0]!.xid));
    const claimed = await xid("SELECT xmin::text AS xid FROM capsync_doc_client_owners WHERE doc = 'd'");
    const appended = await xid("SELECT xmin::text AS xid FROM capsync_doc_updates WHERE doc = 'd'");
    const waited = await xid("SELECT max(xmin::text::bigint) AS xid FROM capsync_doc_updates WHERE doc = 'other'");
    expect(claimed).toBeGreaterThan(waited);
    expect(appended).toBeGreaterThan(claimed);
  });

  it('two stores (two relays) appending to the same documents at once keep every update, in each one’s call order', async () => {
    const url = await server().createDatabase();
    const [a, b] = await Promise.all([open(url), open(url)]);
    open_.push(a, b);
    const docs = ['x', 'y', 'z'];
    const ROUNDS = 20;
    const PER_ROUND = 25;
    const writes: Promise<unknown>[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const [s, store] of [a, b].entries()) {
        for (let i = 0; i < PER_ROUND; i++) {
          const n = round * PER_ROUND + i;
          // [0, 0, store, n high byte, n low byte]: which store wrote it, and its call index.
          writes.push(store.append(docs[n % docs.length]!, new Uint8Array([0, 0, s, n >> 8, n & 0xff])));
        }
      }
      // Let each store's flushes interleave with the other's.
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(writes);
    const reader = await open(url);
    open_.push(reader);
    let total = 0;
    for (const doc of docs) {
      const loaded = await reader.load(doc);
      total += loaded.updates.length;
      expect(loaded.logCount).toBe(loaded.updates.length);
      for (const s of [0, 1]) {
        const order = loaded.updates.filter((u) => u[2] === s).map((u) => (u[3]! << 8) | u[4]!);
        expect(order, `store ${s}'s appends to ${doc} in call order`).toEqual([...order].sort((x, y) => x - y));
      }
    }
    expect(total).toBe(2 * ROUNDS * PER_ROUND);
    // Positions are per document and dense: each document's head is its number of updates.
    for (const doc of docs) {
      const loaded = await reader.load(doc);
      expect(loaded.head, `head of ${doc}`).toBe(loaded.updates.length);
    }
  });

  it('relays starting at once on an empty database migrate it once, without a race', async () => {
    const url = await server().createDatabase();
    const stores = await Promise.all(Array.from({ length: 4 }, () => open(url)));
    open_.push(...stores);
    const versions = await withClient(url, (c) => c.query<{ version: number }>('SELECT version FROM capsync_schema_migrations ORDER BY version'));
    expect(versions.rows.map((r) => r.version)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
  });

  it('applies the migrations a database lacks, and only those', async () => {
    const url = await server().createDatabase();
    open_.push(await open(url));
    const next = [...MIGRATIONS, 'CREATE TABLE capsync_test_next (x integer)'];
    const found = await withClient(url, (c) => migrate(c, next));
    expect(found).toBe(SCHEMA_VERSION);
    expect(await withClient(url, (c) => migrate(c, next))).toBe(SCHEMA_VERSION + 1);
  });

  it('refuses a database whose schema is newer than it understands, with a clear typed error', async () => {
    const url = await server().createDatabase();
    await (await open(url)).close();
    await withClient(url, (c) => c.query('INSERT INTO capsync_schema_migrations (version) VALUES ($1)', [SCHEMA_VERSION + 1]));
    const refused = PostgresDocStore.open(url);
    await expect(refused).rejects.toMatchObject({
      name: 'SchemaVersionError',
      code: 'storage-failure',
      found: SCHEMA_VERSION + 1,
      supported: SCHEMA_VERSION,
    });
    await expect(refused).rejects.toThrow(`schema version ${SCHEMA_VERSION + 1}, newer than this relay understands (${SCHEMA_VERSION})`);
  });

  it('an unreachable database fails opening with a StorageError that does not show the password', async () => {
    const [port] = await freePorts(1);
    const opening = PostgresDocStore.open(`postgres://capsync:s3cret@127.0.0.1:${port}/nothing`, { connectTimeoutMs: 2_000 });
    await expect(opening).rejects.toMatchObject({ code: 'storage-failure', message: expect.stringMatching(/^cannot open PostgreSQL database postgres:\/\/capsync:REDACTED@127\.0\.0\.1:\d+\/nothing: .*ECONNREFUSED/) });
    await expect(opening).rejects.not.toThrow(/s3cret/);
  });

  it('rejects calls after close with a StorageError', async () => {
    const store = await open(await server().createDatabase());
    await store.close();
    await expect(store.append('d', new Uint8Array([0, 0]))).rejects.toMatchObject({ code: 'storage-failure' });
    await expect(store.load('d')).rejects.toMatchObject({ code: 'storage-failure' });
  });

  it('with the database frozen, an append rejects with StorageError after the query timeout instead of hanging, and works once it answers again', async () => {
    const url = await server().createDatabase();
    const store = await PostgresDocStore.open(url, { queryTimeoutMs: 1_000, connectTimeoutMs: 1_000 });
    open_.push(store);
    await store.append('d', new Uint8Array([0, 0, 1]));
    server().pause();
    try {
      const started = performance.now();
      await expect(store.append('d', new Uint8Array([0, 0, 2]))).rejects.toMatchObject({ name: 'StorageError', message: expect.stringMatching(/timeout/i), retryable: true });
      expect(performance.now() - started).toBeLessThan(5_000);
    } finally {
      server().resume();
    }
    await store.append('d', new Uint8Array([0, 0, 3]));
    // The timed-out append may have committed once the server went on (it was sent): 2 may be there.
    expect((await store.load('d')).updates.map((u) => u[2]).filter((n) => n !== 2)).toEqual([1, 3]);
  });

  // Last: it stops the suite's server (and starts it again).
  it('with the database stopped, appends and pings reject with a retryable StorageError (the relay tries again); after a restart they work again', async () => {
    const store = await open(await server().createDatabase());
    open_.push(store);
    await store.append('d', new Uint8Array([0, 0, 1]));
    await server().stop();
    try {
      await expect(store.append('d', new Uint8Array([0, 0, 2]))).rejects.toMatchObject({ name: 'StorageError', code: 'storage-failure', retryable: true });
      await expect(store.ping()).rejects.toMatchObject({ code: 'storage-failure' });
      await expect(store.load('d')).rejects.toMatchObject({ code: 'storage-failure' });
    } finally {
      await server().start();
    }
    await store.ping();
    await store.append('d', new Uint8Array([0, 0, 3]));
    expect((await store.load('d')).updates.map((u) => u[2])).toEqual([1, 3]);
  });
});

describe('loading pg', () => {
  it('only the PostgreSQL store and lock backend import pg, and the relay loads them only when PostgreSQL is configured (dynamic import)', () => {
    const src = path.resolve(import.meta.dirname, '../src');
    const files = fs.readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const text = (f: string) => fs.readFileSync(path.join(src, f), 'utf8');
    // `import type` is erased from the JavaScript: only value imports load a module.
    const importingPg = files.filter((f) => /^import\s(?!type\s)[^;]*from\s+'pg';/m.test(text(f)));
    expect(importingPg).toContain('storage/postgres-store.ts');
    expect(importingPg).toContain('locks/postgres-backend.ts');
    // The PostgreSQL modules (the store's, the lock backend's) import pg and each other; nothing else does.
    const mayImport = (f: string) => f.startsWith('storage/postgres-') || f.startsWith('locks/postgres-');
    expect(importingPg.filter((f) => !mayImport(f))).toEqual([]);
    expect(files.filter((f) => /^import\s(?!type\s)[^;]*from\s+'[^']*postgres-[a-z-]+\.js';/m.test(text(f)) && !mayImport(f))).toEqual([]);
    expect(text('create-relay.ts')).toContain("await import('./storage/postgres-store.js')");
    expect(text('create-relay.ts')).toContain("await import('./locks/postgres-backend.js')");
  });
});
