/**
 * Cluster mode (issue 13), with `clusterPreviews` on: a relay sends what a client wrote to the other relays before it
 * commits (a preview: NOTIFY without a WAL flush), so their clients get it as fast as the
 * relay's own; the ack still waits for the commit. A commit held back (the document's row
 * locked by another transaction) shows both halves. Content whose client id claim is still in
 * flight is never previewed: that claim could lose its race in the store. And a relay never
 * commits an edit its client built on a preview before the preview itself is committed (were
 * the preview's relay to die first, the edit would be unreadable: found by review).
 */
import { afterEach, expect, it } from 'vitest';
import pg from 'pg';
import * as Y from 'yjs';
import { connectAs, updateOf } from '../support/client-ids.js';
import { describePostgres } from '../support/describe-postgres.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { metricValue } from '../support/relay-observe.js';

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
const admins: pg.Client[] = [];
afterEach(async () => {
  await Promise.all(admins.splice(0).map((a) => a.end().catch(() => {})));
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
});

async function admin(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  admins.push(client);
  return client;
}

describePostgres('previews between the relays of a cluster', (server) => {
  it("a change reaches the other relay's clients while its commit is held back, and is acknowledged only once committed", async () => {
    const url = await server().createDatabase();
    const [a, b] = await Promise.all([startRelay({ postgres: url, clusterPreviews: true }), startRelay({ postgres: url, clusterPreviews: true })]);
    relays.push(a, b);
    const onA = await ProtocolClient.synced(a.docUrl('held'));
    const onB = await ProtocolClient.synced(b.docUrl('held'));
    clients.push(onA, onB);
    await onA.waitForAck(onA.type('committed;'));
    await onB.waitForText('committed;');

    // Every append to the document waits for this transaction's row lock.
    const locker = await admin(url);
    await locker.query('BEGIN');
    await locker.query(`SELECT 1 FROM capsync_docs WHERE doc = 'held' FOR UPDATE`);
    const seq = onA.type('previewed;');
    await onB.waitForText('committed;previewed;');
    expect(onA.ackedSeq).toBeLessThan(seq);
    expect(await metricValue(b.httpUrl, 'capsync_cluster_previews_total', { outcome: 'forwarded' })).toBeGreaterThan(0);
    await locker.query('ROLLBACK');
    await onA.waitForAck(seq);

    // Committed once the lock is gone: a relay that loads the document now has it.
    const c = await startRelay({ postgres: url, clusterPreviews: true });
    relays.push(c);
    const onC = await ProtocolClient.synced(c.docUrl('held'));
    clients.push(onC);
    expect(onC.text).toBe('committed;previewed;');
  });

  it('never previews content under a client id whose claim is still being committed; it arrives with its commit', async () => {
    const url = await server().createDatabase();
    const secret = 'cluster-previews-secret-0123456789';
    const [a, b] = await Promise.all([startRelay({ postgres: url, authSecret: secret, clusterPreviews: true }), startRelay({ postgres: url, authSecret: secret, clusterPreviews: true })]);
    relays.push(a, b);
    const bob = await connectAs(b.docUrl('claims'), secret, 'bob');
    const carol = await connectAs(a.docUrl('claims'), secret, 'carol');
    clients.push(bob, carol);
    await carol.waitForAck(carol.type('x'));
    await bob.waitForText('x');

    // Alice's claim of her client id waits for this uncommitted row (same document and id).
    const alice = new Y.Doc();
    Y.applyUpdate(alice, Y.encodeStateAsUpdate(carol.doc));
    const blocker = await admin(url);
    await blocker.query('BEGIN');
    await blocker.query(`INSERT INTO capsync_doc_client_owners (doc, client, owner) VALUES ('claims', $1, 'alice')`, [alice.clientID]);
    const onA = await connectAs(a.docUrl('claims'), secret, 'alice');
    clients.push(onA);
    onA.sendMessage({ type: 'update', update: updateOf(alice, () => alice.getText('t').insert(1, 'hello')) });
    const seq = onA.seq;
    // Carol writes after alice, at the front (her edit does not build on alice's): previewed, in
    // order after whatever alice's write previewed. So when bob has carol's, he would have alice's.
    await carol.waitFor(() => carol.text.includes('hello') || undefined, 'alice on carol (same relay, before the commit)');
    carol.sendMessage({ type: 'update', update: updateOf(carol.doc, () => carol.doc.getText('t').insert(0, 'y')) });
    await bob.waitFor(() => bob.text.startsWith('y') || undefined, "carol's preview on bob");
    expect(bob.text).toBe('yx');
    expect(onA.ackedSeq).toBeLessThan(seq);

    // The claim commits as alice's (the blocking row is gone), then her update, then its note.
    await blocker.query('ROLLBACK');
    await onA.waitForAck(seq);
    await bob.waitFor(() => (bob.text.includes('hello') ? bob.text : undefined), 'alice on bob once committed');
    expect(bob.text).toBe(carol.text);
  });

  it('acknowledges an edit built on a preview only once the preview is committed: never an edit whose dependency may be lost', async () => {
    const url = await server().createDatabase();
    const [a, b] = await Promise.all([startRelay({ postgres: url, clusterPreviews: true }), startRelay({ postgres: url, clusterPreviews: true })]);
    relays.push(a, b);
    const alice = await ProtocolClient.synced(a.docUrl('d'));
    const bob = await ProtocolClient.synced(b.docUrl('d'));
    const carol = await ProtocolClient.synced(b.docUrl('d'));
    const other = await ProtocolClient.synced(a.docUrl('other'));
    clients.push(alice, bob, carol, other);
    await alice.waitForAck(alice.type('base;'));
    await bob.waitForText('base;');
    await carol.waitForText('base;');
    await other.waitForAck(other.type('o'));

    // a's writes wait: its append to 'other' waits for this row lock, and every later append of
    // a (alice's U) waits behind it, while its previews go out.
    const locker = await admin(url);
    await locker.query('BEGIN');
    await locker.query(`SELECT 1 FROM capsync_docs WHERE doc = 'other' FOR UPDATE`);
    other.type('p');
    await waitFor(async () => (await locker.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'`)).rows[0].n > 0, "a's append waiting for the lock");
    const u = alice.type('U;');
    await bob.waitForText('base;U;');
    expect(alice.ackedSeq).toBeLessThan(u);

    // Bob builds on U (his insert's left origin is U's last character).
    const v = bob.type('V;');
    // Carol's independent edit, sent after it, is committed and acknowledged; then a round trip
    // on bob's socket, answered after any ack of V b would have sent before carol's.
    carol.sendMessage({ type: 'update', update: updateOf(carol.doc, () => carol.doc.getText('t').insert(0, 'c')) });
    await carol.waitForAck(carol.seq);
    const seen = bob.received.length;
    bob.sendMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(bob.doc) });
    await bob.waitFor(() => bob.received.slice(seen).some((m) => m.type === 'sync-step-2') || undefined, 'the answer to bob');
    expect(bob.ackedSeq).toBeLessThan(v);

    // U commits: b integrates V on it, commits and acknowledges it. The log holds both.
    await locker.query('ROLLBACK');
    await bob.waitForAck(v);
    const c = await startRelay({ postgres: url, clusterPreviews: true });
    relays.push(c);
    const reader = await ProtocolClient.synced(c.docUrl('d'));
    clients.push(reader);
    expect(reader.text).toContain('base;U;V;');
  });
  it('sends no previews unless asked (clusterPreviews off, the default): changes travel with their commits', async () => {
    const url = await server().createDatabase();
    const [a, b] = await Promise.all([startRelay({ postgres: url }), startRelay({ postgres: url })]);
    relays.push(a, b);
    const onA = await ProtocolClient.synced(a.docUrl('plain'));
    const onB = await ProtocolClient.synced(b.docUrl('plain'));
    clients.push(onA, onB);
    for (let i = 0; i < 5; i++) await onA.waitForAck(onA.type(`${i};`));
    await onB.waitForText('0;1;2;3;4;');
    expect(await metricValue(a.httpUrl, 'capsync_cluster_previews_total', { outcome: 'sent' })).toBe(0);
    expect(await metricValue(b.httpUrl, 'capsync_cluster_previews_total', { outcome: 'forwarded' })).toBe(0);
  });
});

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}
