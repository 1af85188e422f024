/**
 * Positions per document in commit order (PostgresDocStore, postgres-append.ts): several stores
 * (relays) on one database appending, compacting and following documents at once lose nothing
 * and skip nothing; group commit never deadlocks; a database of schema 1 upgrades.
 *
 * The race runs POSTGRES_RACE_SEEDS seeds (default 5) from SEED (default random), each printed:
 *   SEED=<n> POSTGRES_RACE_SEEDS=50 npx vitest run test/postgres-positions.test.ts
 */
import { afterAll, expect, it } from 'vitest';
import pg from 'pg';
import * as Y from 'yjs';
import { describePostgres } from '../../../test/support/describe-postgres.js';
import { SeededRandom } from '../../../test/support/seeded-random.js';
import { MIGRATIONS, migrate, SCHEMA_VERSION } from '../src/storage/postgres-schema.js';
import { PostgresDocStore } from '../src/storage/postgres-store.js';

const SEEDS = Number(process.env['POSTGRES_RACE_SEEDS'] ?? 5);
const FIRST = process.env['SEED'] ? Number(process.env['SEED']) : Math.floor(Math.random() * 2 ** 31);

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A Y.Doc whose edits append `text` to its Y.Text `key`, each returned as one update. */
function writer(key = 't'): { doc: Y.Doc; edit(text: string): Uint8Array } {
  const doc = new Y.Doc();
  return {
    doc,
    edit(text) {
      let update: Uint8Array | null = null;
      const capture = (u: Uint8Array) => (update = u);
      doc.on('update', capture);
      doc.getText(key).insert(doc.getText(key).length, text);
      doc.off('update', capture);
      return update!;
    },
  };
}

function docOf(updates: Uint8Array[]): Y.Doc {
  const doc = new Y.Doc();
  for (const u of updates) Y.applyUpdate(doc, u);
  return doc;
}

const pause = (rng: SeededRandom) =>
  new Promise((resolve) => (rng.next() < 0.5 ? setImmediate(resolve) : setTimeout(resolve, rng.int(0, 2))));

describePostgres('PostgresDocStore positions per document (a real PostgreSQL)', (server) => {
  const stores: PostgresDocStore[] = [];
  async function open(url: string): Promise<PostgresDocStore> {
    const store = await PostgresDocStore.open(url);
    stores.push(store);
    return store;
  }
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });

  console.log(`[postgres positions] seeds ${FIRST}..${FIRST + SEEDS - 1} (replay: SEED=${FIRST} POSTGRES_RACE_SEEDS=${SEEDS})`);
  for (let i = 0; i < SEEDS; i++) {
    const seed = FIRST + i;
    it(`seed ${seed}: relays appending to the same documents while one compacts and one follows with changesAfter lose and skip nothing`, async () => {
      // Closed at the end of each seed: a run of many seeds would run out of connections.
      const opened = stores.length;
      try {
        await race(seed);
      } finally {
        await Promise.all(stores.splice(opened).map((s) => s.close()));
      }
    }, 60_000);
  }

  /**
   * Four stores (relays) append to three documents at once; the first also compacts them, as a
   * relay does (a snapshot of a load, through its head); a fifth follows every document with
   * changesAfter. Nothing appended may be missing from the stored or the followed state, and
   * the follower must see each document's positions 1..head once each, in order.
   */
  async function race(seed: number): Promise<void> {
    const rng = new SeededRandom(seed);
    const url = await server().createDatabase();
    const WRITERS = 4;
    const APPENDS = 300;
    const DOCS = ['a', 'b', 'c'];
    const writers = await Promise.all(Array.from({ length: WRITERS }, () => open(url)));
    const follower = await open(url);
    // Each writer edits its own text in each document: every update it appends depends on its
    // previous one, so one lost or skipped update cuts the text short.
    const editors = writers.map((_, w) => new Map(DOCS.map((d) => [d, writer(`w${w}`)])));
    const expected = new Map(DOCS.map((d) => [d, writers.map(() => '')]));
    const started = performance.now();
    let writing = true;
    let compactions = 0;

    const write = async (w: number) => {
      const appends: Promise<unknown>[] = [];
      for (let n = 0; n < APPENDS; n++) {
        const doc = rng.pick(DOCS);
        const token = `${w}.${n};`;
        expected.get(doc)![w] += token;
        appends.push(writers[w]!.append(doc, editors[w]!.get(doc)!.edit(token)));
        if (rng.next() < 0.3) await pause(rng);
      }
      await Promise.all(appends);
    };

    // Writer 0's store also compacts, as a relay does: through the head of a load, with a
    // snapshot of what that load returned.
    const compact = async () => {
      while (writing) {
        const doc = rng.pick(DOCS);
        const loaded = await writers[0]!.load(doc);
        if (loaded.logCount > 0) {
          await writers[0]!.compact(doc, Y.mergeUpdates(loaded.updates), loaded.head);
          compactions += 1;
        }
        if (rng.next() < 0.2) await pause(rng);
      }
    };

    // The follower reads each document after the last position it saw, in small pages.
    const seen = new Map(DOCS.map((d) => [d, 0]));
    const followed = new Map(DOCS.map((d) => [d, new Y.Doc()]));
    const gaps: string[] = [];
    let snapshots = 0;
    let rows = 0;
    const follow = async (doc: string): Promise<boolean> => {
      const got = await follower.changesAfter(doc, seen.get(doc)!, rng.int(1, 40));
      if (got.snapshot) {
        if (!(got.snapshot.through > seen.get(doc)!)) gaps.push(`${doc}: snapshot through ${got.snapshot.through} after ${seen.get(doc)}`);
        Y.applyUpdate(followed.get(doc)!, got.snapshot.data);
        seen.set(doc, got.snapshot.through);
        snapshots += 1;
      }
      for (const change of got.changes) {
        if (change.position !== seen.get(doc)! + 1) gaps.push(`${doc}: position ${change.position} after ${seen.get(doc)}`);
        Y.applyUpdate(followed.get(doc)!, change.update);
        seen.set(doc, change.position);
        rows += 1;
      }
      return seen.get(doc)! >= got.head;
    };
    const following = (async () => {
      while (writing) {
        await follow(rng.pick(DOCS));
        if (rng.next() < 0.2) await pause(rng);
      }
      // Caught up once every document's head was reached after the writes ended.
      for (const doc of DOCS) while (!(await follow(doc)));
    })();

    const compacting = compact();
    try {
      await Promise.all(writers.map((_, w) => write(w)));
    } finally {
      writing = false;
    }
    await Promise.all([compacting, following]);

    const reader = await open(url);
    let heads = 0;
    for (const doc of DOCS) {
      const loaded = await reader.load(doc);
      heads += loaded.head;
      const state = docOf(loaded.updates);
      for (let w = 0; w < WRITERS; w++) {
        expect(state.getText(`w${w}`).toString(), `writer ${w}'s text in ${doc} as stored`).toBe(expected.get(doc)![w]);
        expect(followed.get(doc)!.getText(`w${w}`).toString(), `writer ${w}'s text in ${doc} as followed`).toBe(expected.get(doc)![w]);
      }
      expect(seen.get(doc), `${doc}: followed to its head`).toBe(loaded.head);
    }
    expect(gaps, 'positions the follower saw out of order, twice or after a gap').toEqual([]);
    // Dense: each document's positions are 1..head, one per append.
    expect(heads).toBe(WRITERS * APPENDS);
    expect(compactions).toBeGreaterThan(0);
    console.log(
      `[postgres positions] seed ${seed}: ${WRITERS * APPENDS} appends, ${compactions} compactions, follower read ${rows} rows and ${snapshots} snapshots, ${Math.round(performance.now() - started)} ms`,
    );
  }

  it('group commit of several documents locks them in one order: two relays appending to the same documents in opposite orders never deadlock', async () => {
    const url = await server().createDatabase();
    const [a, b] = await Promise.all([open(url), open(url)]);
    const names = Array.from({ length: 200 }, (_, i) => `d${i}`);
    const ROUNDS = 20;
    for (let round = 0; round < ROUNDS; round++) {
      // One batch each (one turn), the document rows wanted in opposite orders.
      await Promise.all([
        ...names.map((n) => a.append(n, new Uint8Array([0, 0, round]))),
        ...[...names].reverse().map((n) => b.append(n, new Uint8Array([0, 0, round]))),
      ]);
    }
    for (const n of names) expect((await a.load(n)).head).toBe(2 * ROUNDS);
  }, 30_000);

  it('a delete on one relay racing with appends and compactions of the old incarnation on another: none of them ends up in the new incarnation', async () => {
    const url = await server().createDatabase();
    const [deleter, writer] = await Promise.all([open(url), open(url)]);
    for (let round = 0; round < 30; round++) {
      const name = `race-${round}`;
      const w = new Y.Doc();
      const edit = (text: string): Uint8Array => {
        let update: Uint8Array | null = null;
        const capture = (u: Uint8Array) => (update = u);
        w.on('update', capture);
        w.getText('t').insert(0, text);
        w.off('update', capture);
        return update!;
      };
      const first = await writer.append(name, edit('a'), 0);
      // The other relay keeps appending (and compacting) for incarnation 0 while the delete runs.
      const writes = Array.from({ length: 20 }, (_, i) =>
        (i % 5 === 4 ? writer.compact(name, Y.encodeStateAsUpdate(w), first.position, 0) : writer.append(name, edit(`x${i}`), 0)).then(
          () => 'ok',
          (err: { code?: string }) => err.code ?? 'error',
        ),
      );
      const incarnation = await deleter.delete(name);
      const outcomes = await Promise.all(writes);
      expect(outcomes.every((o) => o === 'ok' || o === 'document-deleted')).toBe(true);
      const loaded = await deleter.load(name);
      expect(loaded.incarnation).toBe(incarnation);
      expect(loaded.updates).toEqual([]);
      // Appends of incarnation 0 after the delete are refused; the new incarnation's are stored.
      await expect(writer.append(name, edit('late'), 0)).rejects.toMatchObject({ code: 'document-deleted' });
      await writer.append(name, new Uint8Array([0, 0]), incarnation);
      expect((await deleter.load(name)).updates.length).toBe(1);
    }
  }, 60_000);

  it('changesAfter pages through the log, and gives the snapshot when the entries asked for were compacted', async () => {
    const store = await open(await server().createDatabase());
    const w = writer();
    const positions: number[] = [];
    for (const text of ['a', 'b', 'c', 'd', 'e']) positions.push((await store.append('d', w.edit(text))).position);
    expect(positions).toEqual([1, 2, 3, 4, 5]);
    const page = await store.changesAfter('d', 0, 2);
    expect(page).toMatchObject({ head: 5, changes: [{ position: 1 }, { position: 2 }] });
    expect(page.snapshot).toBeUndefined();
    expect((await store.changesAfter('d', 2)).changes.map((c) => c.position)).toEqual([3, 4, 5]);
    // A byte bound: entries while the bytes before them are under it, and always the first.
    const sizes = (await store.changesAfter('d', 0)).changes.map((c) => c.update.byteLength);
    expect((await store.changesAfter('d', 0, 10, sizes[0]! + 1)).changes.map((c) => c.position)).toEqual([1, 2]);
    expect((await store.changesAfter('d', 0, 10, 1)).changes.map((c) => c.position)).toEqual([1]);
    const covered = docOf((await store.load('d')).updates.slice(0, 3));
    await store.compact('d', Y.encodeStateAsUpdate(covered), 3);
    const after1 = await store.changesAfter('d', 1);
    expect(after1.snapshot?.through).toBe(3);
    expect(after1.changes.map((c) => c.position)).toEqual([4, 5]);
    expect(docOf([after1.snapshot!.data, ...after1.changes.map((c) => c.update)]).getText('t').toString()).toBe('abcde');
    const after3 = await store.changesAfter('d', 3);
    expect(after3.snapshot).toBeUndefined();
    expect(after3.changes.map((c) => c.position)).toEqual([4, 5]);
    expect(await store.changesAfter('d', 5)).toEqual({ changes: [], head: 5, incarnation: 0 });
    expect(await store.changesAfter('unknown', 0)).toEqual({ changes: [], head: 0, incarnation: 0 });
    // A delete keeps the head: positions go on after it.
    await store.delete('d');
    expect(await store.load('d')).toEqual({ updates: [], head: 5, logCount: 0, logBytes: 0, incarnation: 1 });
    expect((await store.append('d', w.edit('f'))).position).toBe(6);
  });

  it('upgrades a database of schema 1 with documents: texts, heads and log sizes carry over, and no old position comes back', async () => {
    const url = await server().createDatabase();
    await withClient(url, (c) => migrate(c, MIGRATIONS.slice(0, 1)));
    const [wa, wb, wg] = [writer(), writer(), writer()];
    // Written as a store of schema 1 did: ids from one sequence, interleaved across documents.
    const old = await withClient(url, async (c) => {
      const insert = async (doc: string, update: Uint8Array) =>
        Number((await c.query<{ id: string }>('INSERT INTO capsync_doc_updates (doc, data) VALUES ($1, $2) RETURNING id', [doc, Buffer.from(update)])).rows[0]!.id);
      await insert('a', wa.edit('a1'));
      await insert('b', wb.edit('b1'));
      const a2 = await insert('a', wa.edit('a2'));
      // A compaction of 'a' through a2.
      await c.query('INSERT INTO capsync_doc_snapshots (doc, through, data) VALUES ($1, $2, $3)', ['a', a2, Buffer.from(Y.encodeStateAsUpdate(wa.doc))]);
      await c.query("DELETE FROM capsync_doc_updates WHERE doc = 'a' AND id <= $1", [a2]);
      const a3 = await insert('a', wa.edit('a3'));
      const b2 = await insert('b', wb.edit('b2'));
      await insert('gone', wg.edit('g1'));
      const last = await insert('gone', wg.edit('g2'));
      // A deleted document: no row of it is left.
      await c.query("DELETE FROM capsync_doc_updates WHERE doc = 'gone'");
      return { a2, a3, b2, last };
    });
    const store = await open(url);
    const a = await store.load('a');
    expect(docOf(a.updates).getText('t').toString()).toBe('a1a2a3');
    expect(a).toMatchObject({ head: old.a3, logCount: 1 });
    const b = await store.load('b');
    expect(docOf(b.updates).getText('t').toString()).toBe('b1b2');
    expect(b).toMatchObject({ head: old.b2, logCount: 2, logBytes: b.updates[0]!.byteLength + b.updates[1]!.byteLength });
    const catchUp = await store.changesAfter('a', 0);
    expect(catchUp.snapshot?.through).toBe(old.a2);
    expect(catchUp.changes.map((c) => c.position)).toEqual([old.a3]);
    // Appends go on after each document's head; a document deleted before the upgrade, or new,
    // starts after every id schema 1 handed out.
    expect(await store.append('a', wa.edit('a4'))).toMatchObject({ position: old.a3 + 1, logCount: 2 });
    expect((await store.append('b', wb.edit('b3'))).position).toBe(old.b2 + 1);
    expect((await store.append('gone', wg.edit('g3'))).position).toBe(old.last + 1);
    expect((await store.append('new', writer().edit('n'))).position).toBe(old.last + 1);
    expect((await store.list()).sort()).toEqual(['a', 'b', 'gone', 'new']);
    const versions = await withClient(url, (c) => c.query<{ version: number }>('SELECT version FROM capsync_schema_migrations ORDER BY version'));
    expect(versions.rows.map((r) => r.version)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
  });
});
