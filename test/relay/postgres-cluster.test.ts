/**
 * Cluster mode (issue 13): relays on one PostgreSQL database are one cluster with no peer list. A
 * change committed by one reaches every other relay that has the document loaded, through
 * LISTEN/NOTIFY (small changes inline, large ones read by reference), and a relay that missed
 * notes (its listening connection was killed) catches up from the log.
 *
 * The race runs CLUSTER_RACE_SEEDS seeds (default 2) from SEED (default random), each printed:
 *   SEED=<n> CLUSTER_RACE_SEEDS=50 npx vitest run relay/postgres-cluster.test.ts -t race
 */
import { afterEach, expect, it } from 'vitest';
import pg from 'pg';
import * as Y from 'yjs';
import { CloseCode, docFromUpdates } from '@capsync/core';
import WebSocket from 'ws';
import { createClient, type WebSocketConstructor } from '@capsync/client';
import { connectAs, updateOf } from '../support/client-ids.js';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { codeOf } from '../support/error-code.js';
import { SeededRandom } from '../support/seeded-random.js';
import { describePostgres } from '../support/describe-postgres.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { metricValue, waitForMetric, waitForMetricTo } from '../support/relay-observe.js';

const SEEDS = Number(process.env['CLUSTER_RACE_SEEDS'] ?? 2);
const FIRST = process.env['SEED'] ? Number(process.env['SEED']) : Math.floor(Math.random() * 2 ** 31);

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
});

async function cluster(url: string, n: number, compactAfter?: number): Promise<TestRelay[]> {
  const compaction = compactAfter ? { compaction: { maxUpdates: compactAfter } } : {};
  const started = await Promise.all(Array.from({ length: n }, () => startRelay({ postgres: url, ...compaction })));
  relays.push(...started);
  return started;
}

async function synced(url: string): Promise<ProtocolClient> {
  const client = await ProtocolClient.synced(url);
  clients.push(client);
  return client;
}

describePostgres('relays on one PostgreSQL database (cluster mode)', (server) => {
  it('delivers a change committed on one relay to the clients of the others, small ones inline and large ones by reference', async () => {
    const url = await server().createDatabase();
    const [a, b, c] = await cluster(url, 3);
    const onA = await synced(a!.docUrl('shared'));
    const onB = await synced(b!.docUrl('shared'));
    const onC = await synced(c!.docUrl('shared'));

    onA.type('hello from a;');
    await onB.waitForText('hello from a;');
    await onC.waitForText('hello from a;');
    onC.type(' and c;');
    await onA.waitForText('hello from a; and c;');
    await onB.waitForText('hello from a; and c;');

    // Over the inline bound: the note carries positions only, the others read the log.
    const reads = await metricValue(b!.httpUrl, 'capsync_cluster_catch_up_reads_total');
    const large = 'x'.repeat(20_000);
    onB.type(large);
    await onA.waitFor(() => onA.textLength === onB.textLength || undefined, 'the large change on a');
    await onC.waitFor(() => onC.textLength === onB.textLength || undefined, 'the large change on c');
    expect(onA.text).toBe(onB.text);
    expect(await metricValue(a!.httpUrl, 'capsync_cluster_catch_up_reads_total')).toBeGreaterThan(0);
    // The writer's own relay needs no read for its own change.
    expect(await metricValue(b!.httpUrl, 'capsync_cluster_catch_up_reads_total')).toBe(reads);
  });

  it('catches up from the log after its listening connection was killed: nothing committed meanwhile is missed', async () => {
    const url = await server().createDatabase();
    const [a, b] = await cluster(url, 2);
    const onA = await synced(a!.docUrl('missed'));
    const onB = await synced(b!.docUrl('missed'));
    onA.type('before;');
    await onB.waitForText('before;');

    // Kill b's listening connection (and only it: LISTEN sessions are the ones with listeners),
    // then write on a while b cannot hear.
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await waitForMetric(b!.httpUrl, 'capsync_cluster_listening', {}, 1);
      const { rows } = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`,
      );
      expect(rows.length).toBeGreaterThanOrEqual(2);
      for (const { pid } of rows) await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    } finally {
      await admin.end();
    }
    let seq = 0;
    await waitForMetricTo(b!.httpUrl, 'capsync_cluster_listening', {}, (v) => v === 0, 'b noticing its listener is gone');
    for (let i = 0; i < 20; i++) seq = onA.type(`while deaf ${i};`);
    await onA.waitForAck(seq);
    // Back, b reads what it missed from the log.
    await onB.waitFor(() => onB.text === onA.text || undefined, 'b level with a after its listener came back', 20_000);
    expect(await metricValue(b!.httpUrl, 'capsync_cluster_catch_up_reads_total')).toBeGreaterThan(0);
  });

  it("refuses on one relay a write under a client id another relay's writer claimed: claims travel with the notes", async () => {
    const url = await server().createDatabase();
    const secret = 'cluster-client-ids-secret-0123456789';
    const [a, b] = await Promise.all([startRelay({ postgres: url, authSecret: secret }), startRelay({ postgres: url, authSecret: secret })]);
    relays.push(a, b);
    // Bob's document is loaded on b before alice claims anything: b learns her claim from its note.
    const bob = await connectAs(b.docUrl('owned'), secret, 'bob');
    clients.push(bob);
    const alice = new Y.Doc();
    const onA = await connectAs(a.docUrl('owned'), secret, 'alice');
    clients.push(onA);
    onA.sendMessage({ type: 'update', update: updateOf(alice, () => alice.getText('t').insert(0, 'hello')) });
    await onA.waitForAck(onA.seq);
    await bob.waitForText('hello');
    const forger = new Y.Doc();
    Y.applyUpdate(forger, Y.encodeStateAsUpdate(bob.doc));
    forger.clientID = alice.clientID;
    bob.sendMessage({ type: 'update', update: updateOf(forger, () => forger.getText('t').insert(5, ' -forged')) });
    const closed = await bob.waitClosed();
    expect(closed.code).toBe(CloseCode.Forbidden);
    expect(closed.reason).toMatch(/^not-owner: /);
    // Nothing of it anywhere.
    const reader = await connectAs(a.docUrl('owned'), secret, 'carol');
    clients.push(reader);
    expect(reader.text).toBe('hello');
  });

  it("refuses a quorum flush at once, saying why, where the database has no synchronous standby; a relay flush and a change on another relay still go through", async () => {
    const url = await server().createDatabase();
    const [a, b] = await cluster(url, 2);
    const client = createClient({ url: a!.url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS });
    try {
      const h = await client.open('quorum');
      await h.whenSynced({ timeoutMs: 10_000 });
      h.doc.getText('t').insert(0, 'typed');
      const started = performance.now();
      const refused = h.flush({ durability: 'quorum', timeoutMs: 10_000 });
      expect(await codeOf(refused)).toBe('quorum-unsupported');
      await expect(refused).rejects.toThrow(/no synchronous standby/);
      // At once: not at the flush's timeout.
      expect(performance.now() - started).toBeLessThan(5_000);
      await h.flush({ durability: 'relay', timeoutMs: 10_000 });
      const onB = await synced(b!.docUrl('quorum'));
      expect(onB.text).toBe('typed');
      expect(await metricValue(a!.httpUrl, 'capsync_quorum_acks_total', { outcome: 'refused' })).toBeGreaterThanOrEqual(1);
    } finally {
      await client.close();
    }
  });

  console.log(`[cluster race] seeds ${FIRST}..${FIRST + SEEDS - 1} (replay: SEED=${FIRST} CLUSTER_RACE_SEEDS=${SEEDS})`);
  for (let i = 0; i < SEEDS; i++) {
    const seed = FIRST + i;
    it(`race, seed ${seed}: clients on three relays typing at once, relays compacting every few updates, listeners killed at random: every acknowledged edit everywhere, all equal to the database`, async () => {
      const rnd = new SeededRandom(seed);
      const url = await server().createDatabase();
      const rs = await cluster(url, 3, rnd.int(3, 12));
      const writers: ProtocolClient[] = [];
      for (const r of rs) for (let k = 0; k < 2; k++) writers.push(await synced(r.docUrl('race')));
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const typed: string[] = [];
      const acks: Promise<unknown>[] = [];
      try {
        for (let round = 0; round < 40; round++) {
          const w = rnd.int(0, writers.length - 1);
          const marker = `<${seed}:${round}:${w}>`;
          typed.push(marker);
          const writer = writers[w]!;
          // A few large ones: those travel by reference.
          const seq = writer.type(rnd.int(0, 9) === 0 ? marker + '.'.repeat(5_000) : marker);
          acks.push(writer.waitForAck(seq, 20_000));
          if (rnd.int(0, 9) === 0) {
            await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`);
          }
          // Sometimes in the same turn, sometimes after the others had a moment.
          if (rnd.int(0, 2) === 0) await new Promise((resolve) => setImmediate(resolve));
        }
        await Promise.all(acks);
      } finally {
        await admin.end();
      }
      const expected = writers[0]!;
      for (const w of writers) {
        await w.waitFor(() => typed.every((m) => w.text.includes(m)) || undefined, 'every marker on every client', 30_000);
      }
      for (const w of writers) expect(w.text).toBe(expected.text);
      // What the database holds is the same document.
      const stored = new pg.Client({ connectionString: url });
      await stored.connect();
      try {
        const { rows } = await stored.query<{ data: Buffer }>(
          `SELECT data FROM (SELECT 0 AS k, through AS pos, data FROM capsync_doc_snapshots WHERE doc = 'race'
             UNION ALL SELECT 1, pos, data FROM capsync_doc_updates WHERE doc = 'race') t ORDER BY k, pos`,
        );
        const { doc, skipped } = docFromUpdates(rows.map((r) => new Uint8Array(r.data)));
        expect(skipped).toEqual([]);
        expect(doc.getText('t').toString()).toBe(expected.text);
        doc.destroy();
      } finally {
        await stored.end();
      }
    }, 120_000);
  }
});
