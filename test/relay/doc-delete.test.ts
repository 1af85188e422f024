/**
 * `DELETE /v1/docs/:name` (issue 14): the document and its log go, its sessions close with
 * 4410 DocumentDeleted, and a replica that synced before the delete cannot bring it back: the
 * relay refuses it by its incarnation before taking any of its updates; the client reports
 * 'document-deleted' and clears its replica (or keeps it, `onDeleted: 'keep'`). On the SQLite
 * store and on PostgreSQL, where a delete on one relay of a cluster closes the sessions of the
 * others.
 */
import { afterEach, expect, it } from 'vitest';
import pg from 'pg';
import { CloseCode, MemoryDocStore, type CapsyncError, type StoredDoc } from '@capsync/core';
import type { DocHandle } from '@capsync/client';
import { TestDevice } from '../support/client-fixture.js';
import { describePostgres } from '../support/describe-postgres.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { signToken } from '../support/tokens.js';
import { waitForEvent, withTimeout } from '../support/wait.js';
import { waitForMetric, waitForMetricTo } from '../support/relay-observe.js';

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
});

async function relayOn(postgres: string | undefined, options: Parameters<typeof startRelay>[0] = {}): Promise<TestRelay> {
  const relay = await startRelay({ ...options, ...(postgres ? { postgres } : {}) });
  relays.push(relay);
  return relay;
}

async function synced(url: string): Promise<ProtocolClient> {
  const client = await ProtocolClient.synced(url);
  clients.push(client);
  return client;
}

async function del(relay: TestRelay, name: string, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${relay.httpUrl}/v1/docs/${encodeURIComponent(name)}`, {
    method: 'DELETE',
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function stored(relay: TestRelay, name: string): Promise<unknown> {
  return (await fetch(`${relay.httpUrl}/v1/docs/${encodeURIComponent(name)}`)).json();
}

/** The first 'error' event of `handle` with `code`. */
function errorOf(handle: DocHandle, code: string): Promise<CapsyncError> {
  return withTimeout(
    new Promise<CapsyncError>((resolve) => {
      const on = (err: CapsyncError) => {
        if (err.code !== code) return;
        handle.off('error', on);
        resolve(err);
      };
      handle.on('error', on);
    }),
    10_000,
    `a ${code} error`,
  );
}

/** The cases every store runs; `postgres` is the database URL, or undefined for SQLite. */
function deletionCases(store: () => Promise<string | undefined>): void {
  it('closes the connected clients with DocumentDeleted; the document then loads empty, and a new client of the name starts empty', async () => {
    const relay = await relayOn(await store());
    const a = await synced(relay.docUrl('doc'));
    const b = await synced(relay.docUrl('doc'));
    await a.waitForAck(a.type('old content'));
    await b.waitForText('old content');

    const answer = await del(relay, 'doc');
    expect(answer).toMatchObject({ status: 200, json: { deleted: true, incarnation: 1 } });
    expect((await a.waitClosed()).code).toBe(CloseCode.DocumentDeleted);
    expect((await b.waitClosed()).code).toBe(CloseCode.DocumentDeleted);
    expect(await stored(relay, 'doc')).toEqual({});

    const fresh = await synced(relay.docUrl('doc'));
    expect(fresh.text).toBe('');
    await fresh.waitForAck(fresh.type('new'));
    expect(await stored(relay, 'doc')).toEqual({ t: 'new' });
  });

  for (const onDeleted of ['clear', 'keep'] as const) {
    it(`an offline client's replica of the deleted document does not bring it back; the client reports document-deleted and ${onDeleted === 'clear' ? 'clears' : 'keeps'} its replica`, async () => {
      const relay = await relayOn(await store());
      const device = new TestDevice(relay.url, 'indexeddb', 'phone', { onDeleted });
      const first = await device.open('notes');
      first.handle.doc.getText('t').insert(0, 'before the delete');
      await first.handle.flush({ durability: 'relay' });
      // Goes offline; edits more meanwhile (pending, in its stored outbox).
      first.handle.disconnect();
      first.handle.doc.getText('t').insert(0, 'offline edit; ');
      await first.close();

      expect((await del(relay, 'notes')).status).toBe(200);

      const again = await device.open('notes', { connect: false });
      closers.push(() => again.close());
      expect(again.handle.doc.getText('t').toString()).toBe('offline edit; before the delete');
      const refused = errorOf(again.handle, 'document-deleted');
      again.handle.connect();
      expect((await refused).code).toBe('document-deleted');
      if (onDeleted === 'clear') await again.handle.cleared;
      // Not merged: the relay's document stays empty, also after the client had its chance.
      expect(await stored(relay, 'notes')).toEqual({});
      expect(again.handle.status).toBe('offline');
      await again.close();
      closers.pop();

      const third = await device.open('notes', { connect: false });
      closers.push(() => third.close());
      expect(third.handle.doc.getText('t').toString()).toBe(onDeleted === 'clear' ? '' : 'offline edit; before the delete');
      if (onDeleted === 'clear') {
        // Cleared: it starts in the new document, which it may write to.
        third.handle.connect();
        third.handle.doc.getText('t').insert(0, 'after');
        await third.handle.flush({ durability: 'relay' });
        expect(await stored(relay, 'notes')).toEqual({ t: 'after' });
      }
    });
  }

  it("on a client's multiplexed socket only the deleted document's session closes; its other document keeps syncing", async () => {
    const relay = await relayOn(await store());
    const device = new TestDevice(relay.url, 'memory', 'laptop');
    const session = await device.open('gone');
    closers.push(() => session.close());
    const other = await session.client.open('stays');
    session.handle.doc.getText('t').insert(0, 'to delete');
    other.doc.getText('t').insert(0, 'kept');
    await Promise.all([session.handle.flush(), other.flush()]);
    const refused = errorOf(session.handle, 'document-deleted');

    expect((await del(relay, 'gone')).status).toBe(200);
    await refused;
    await session.handle.cleared;
    other.doc.getText('t').insert(4, ' and still synced');
    await other.flush({ durability: 'relay' });
    expect(await stored(relay, 'stays')).toEqual({ t: 'kept and still synced' });
    expect(await stored(relay, 'gone')).toEqual({});
    expect(session.handle.status).toBe('offline');
  });

  it('a wire client announcing the old incarnation is closed 4410 and none of its update is stored', async () => {
    const relay = await relayOn(await store());
    const writer = await synced(relay.docUrl('w'));
    await writer.waitForAck(writer.type('x'));
    expect((await del(relay, 'w')).status).toBe(200);
    await writer.waitClosed();
    // Its hello says which incarnation its replica synced at; its update follows at once.
    const stale = await ProtocolClient.connect(relay.docUrl('w'), { answerSync: false, capabilities: ['incarnations', 'incarnation:0'] });
    clients.push(stale);
    stale.doc.getText('t').insert(0, 'resurrected');
    const closed = await stale.waitClosed();
    expect(closed.code).toBe(CloseCode.DocumentDeleted);
    expect(closed.reason).toMatch(/^document-deleted: /);
    expect(await stored(relay, 'w')).toEqual({});
  });

  it('a wire client announcing a malformed incarnation (16 digits) is closed with BadMessage, none of its update stored', async () => {
    const relay = await relayOn(await store());
    const writer = await synced(relay.docUrl('m'));
    await writer.waitForAck(writer.type('before'));
    expect((await del(relay, 'm')).status).toBe(200);
    await writer.waitClosed();
    const liar = await ProtocolClient.connect(relay.docUrl('m'), { answerSync: false, capabilities: ['incarnations', 'incarnation:0000000000000000'] });
    clients.push(liar);
    liar.doc.getText('t').insert(0, 'resurrected');
    const closed = await liar.waitClosed();
    expect(closed.code).toBe(CloseCode.BadMessage);
    expect(await stored(relay, 'm')).toEqual({});
  });

  it('a wire client announcing a NEWER incarnation than the relay holds (its store restored from a backup) is served, not refused', async () => {
    const relay = await relayOn(await store());
    const client = await ProtocolClient.connect(relay.docUrl('restored'), { answerSync: false, capabilities: ['incarnations', 'incarnation:3'] });
    clients.push(client);
    client.doc.getText('t').insert(0, 'only copy after the restore');
    await client.waitForAck(client.seq);
    expect(await stored(relay, 'restored')).toEqual({ t: 'only copy after the restore' });
  });

  it('calls onDocumentDeleted; a read-only token gets 403, an unknown document 404, and nothing is deleted', async () => {
    const secret = 'doc-delete-secret-0123456789abcdef';
    const deleted: unknown[] = [];
    let told: () => void = () => {};
    const hooked = new Promise<void>((resolve) => (told = resolve));
    const relay = await relayOn(await store(), {
      authSecret: secret,
      hooks: {
        onDocumentDeleted: (event) => {
          deleted.push(event);
          told();
        },
      },
    });
    const exp = Math.floor(Date.now() / 1000) + 600;
    const writer = await signToken(secret, { sub: 'backend', exp, docs: { '*': 'write' } });
    const reader = await signToken(secret, { sub: 'viewer', exp, docs: { '*': 'read' } });
    const patched = await fetch(`${relay.httpUrl}/v1/docs/kept`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${writer}` },
      body: JSON.stringify({ edits: [{ text: 't', append: 'content' }] }),
    });
    expect(patched.status).toBe(200);

    expect(await del(relay, 'kept', reader)).toMatchObject({ status: 403, json: { error: { code: 'read-only' } } });
    expect((await del(relay, 'kept')).status).toBe(401);
    expect(await del(relay, 'never-written', writer)).toMatchObject({ status: 404, json: { error: { code: 'not-found' } } });
    const read = await fetch(`${relay.httpUrl}/v1/docs/kept`, { headers: { authorization: `Bearer ${reader}` } });
    expect(await read.json()).toEqual({ t: 'content' });
    expect(deleted).toEqual([]);

    expect(await del(relay, 'kept', writer)).toMatchObject({ status: 200, json: { deleted: true, incarnation: 1 } });
    await withTimeout(hooked, 5_000, 'onDocumentDeleted');
    expect(deleted).toEqual([{ docName: 'kept', identity: 'backend', incarnation: 1 }]);
    expect(await del(relay, 'kept', writer)).toMatchObject({ status: 404 });
    const metrics = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^capsync_doc_deletes_total 1$/m);
  });
}

deletionCases(async () => undefined);

/** A memory store whose loads wait while `shut` (they are counted, `whenLoading` resolves at the n-th). */
class HeldLoads extends MemoryDocStore {
  private gate: Promise<void> | null = null;
  private opened: () => void = () => {};
  private loads = 0;
  private watchers: { n: number; told: () => void }[] = [];
  shut(): void {
    this.gate = new Promise((resolve) => (this.opened = resolve));
  }
  open(): void {
    this.gate = null;
    this.opened();
  }
  whenLoading(n: number): Promise<void> {
    if (this.loads >= n) return Promise.resolve();
    return new Promise((told) => this.watchers.push({ n, told }));
  }
  override async load(name: string): Promise<StoredDoc> {
    const gate = this.gate;
    this.loads++;
    for (const w of this.watchers.filter((w) => this.loads >= w.n)) w.told();
    if (gate) await gate;
    return super.load(name);
  }
}

it('a client with no incarnation (new offline content) that connects while a DELETE reads the store is served the new incarnation, not closed', async () => {
  const store = new HeldLoads();
  const relay = await relayOn(undefined, { storage: store, idleTimeoutMs: 10 });
  const w = await synced(relay.docUrl('n'));
  await w.waitForAck(w.type('old'));
  await w.close();
  await waitForEvent(relay.relay.registry, 'unloaded', () => relay.relay.registry.peek('n') === undefined, 'the copy unloaded');
  // Loads wait from now on: the DELETE's existence read, then the client's load of the old copy.
  store.shut();
  const deleting = del(relay, 'n');
  await store.whenLoading(1);
  const fresh = await ProtocolClient.connect(relay.docUrl('n'), { answerSync: true, capabilities: ['incarnations'] });
  clients.push(fresh);
  fresh.doc.getText('t').insert(0, 'brand new offline content');
  await store.whenLoading(2);
  store.open();
  expect((await deleting).status).toBe(200);
  expect(await fresh.ackedOrClosed(fresh.seq)).toBe('acked');
  expect(await stored(relay, 'n')).toEqual({ t: 'brand new offline content' });
});

describePostgres('document deletion on PostgreSQL (cluster mode)', (server) => {
  deletionCases(() => server().createDatabase());

  it('a delete on relay A closes the sessions of the document on relay B, which then serves it empty', async () => {
    const url = await server().createDatabase();
    const a = await relayOn(url);
    const b = await relayOn(url);
    const onA = await synced(a.docUrl('shared'));
    const onB = await synced(b.docUrl('shared'));
    await onA.waitForAck(onA.type('from a'));
    await onB.waitForText('from a');

    expect((await del(a, 'shared')).status).toBe(200);
    expect((await onA.waitClosed()).code).toBe(CloseCode.DocumentDeleted);
    expect((await onB.waitClosed()).code).toBe(CloseCode.DocumentDeleted);
    expect(await stored(b, 'shared')).toEqual({});
    const again = await synced(b.docUrl('shared'));
    expect(again.text).toBe('');
    await again.waitForAck(again.type('new on b'));
    const onA2 = await synced(a.docUrl('shared'));
    expect(onA2.text).toBe('new on b');
  });

  it("a relay that missed the delete's note (its listening connection was killed) finds the new incarnation on its catch-up read and closes its sessions", async () => {
    const url = await server().createDatabase();
    const a = await relayOn(url);
    const b = await relayOn(url);
    const onB = await synced(b.docUrl('deaf'));
    await onB.waitForAck(onB.type('old'));
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await waitForMetric(b.httpUrl, 'capsync_cluster_listening', {}, 1);
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`);
    } finally {
      await admin.end();
    }
    await waitForMetricTo(b.httpUrl, 'capsync_cluster_listening', {}, (v) => v === 0, 'b noticing its listener is gone');
    expect((await del(a, 'deaf')).status).toBe(200);
    // Back, b reads the log, sees incarnation 1 and drops its copy instead of applying anything.
    expect((await onB.waitClosed(20_000)).code).toBe(CloseCode.DocumentDeleted);
    expect(await stored(b, 'deaf')).toEqual({});
  });
});
