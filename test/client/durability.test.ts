import 'fake-indexeddb/auto';
import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import {
  IndexedDbStorage,
  UnavailableError,
  createClient,
  type CapsyncClient,
  type ClientOptions,
  type DocHandle,
  type DocHandleEvents,
} from '@capsync/client';
import { FailingIdb, type TxRecord } from '../support/failing-idb.js';
import { startRelay, tempDir, type TestRelay } from '../support/relay-fixture.js';
import { killRelay, spawnRelay, type RelayProcess } from '../support/relay-process.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { recordingWebSocket } from '../support/recording-websocket.js';
import { waitForEvent } from '../support/wait.js';
import { until } from '../support/client-fixture.js';

/**
 * Durability of the browser client: what is saved locally survives reloads and crashes,
 * the stored outbox makes `pending` exact across them, what the relay acknowledged survives
 * the relay's SIGKILL, local writes are batched and the local log stays bounded, and the CP
 * calls say 'unavailable' instead of waiting forever.
 *
 * A simulated browser profile is a fake-indexeddb factory wrapped by FailingIdb; a "reload"
 * is a new client on the same factory. A "crash" is `profile.crash()`: transactions not yet
 * committed are aborted and the dead tab can no longer touch the database (what it had only
 * queued is lost, what it committed stays), and its link is stopped first so it cannot
 * upload its in-memory state either.
 */

const DOC = 'notes/durable';
const { WebSocket } = recordingWebSocket();

const clients: CapsyncClient[] = [];
const cleanups: (() => Promise<unknown> | unknown)[] = [];

function client(url: string, options: Partial<ClientOptions> = {}): CapsyncClient {
  const c = createClient({
    url,
    storage: 'memory',
    WebSocket: WebSocket as never,
    crossTab: false,
    reconnect: { baseMs: 20, maxMs: 100 },
    ...options,
  });
  clients.push(c);
  return c;
}

/** A tab of a simulated browser whose IndexedDB is `profile`. */
function tab(url: string, profile: FailingIdb, options: Partial<ClientOptions> = {}): CapsyncClient {
  return client(url, { storage: new IndexedDbStorage({ factory: profile }), ...options });
}

/** The tab's process dies: its link goes first (nothing more reaches the relay), then its storage. */
function crash(handle: DocHandle, profile: FailingIdb): void {
  handle.disconnect();
  profile.crash();
}


/** What a fresh client with no local state gets from the relay at `url`. */
async function relayText(url: string, doc = DOC): Promise<string> {
  const reader = client(url);
  const handle = await reader.open(doc);
  await handle.whenSynced({ timeoutMs: 5_000 });
  const text = handle.doc.getText('t').toString();
  await reader.close();
  return text;
}

/** The rows of the stored log and outbox, read through a connection of our own. */
async function stored(profile: FailingIdb, doc = DOC) {
  const store = await new IndexedDbStorage({ factory: profile.inner }).open(doc);
  try {
    return await store.load();
  } finally {
    store.close();
  }
}

function append(handle: DocHandle, s: string): void {
  const t = handle.doc.getText('t');
  t.insert(t.length, s);
}

const isCompaction = (t: TxRecord) => t.mode === 'readwrite' && t.stores.length === 1 && t.stores[0] === 'updates';
const isBatchWrite = (t: TxRecord) => t.mode === 'readwrite' && t.stores.includes('outbox');

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  for (const f of cleanups.splice(0).reverse()) await f();
});

async function relay(): Promise<TestRelay> {
  const r = await startRelay();
  cleanups.push(() => r.dispose());
  return r;
}

async function proxyTo(r: TestRelay, mode: 'pass' | 'reset' | 'hold' = 'pass'): Promise<FaultProxy> {
  const p = await FaultProxy.start(r.port, { mode });
  cleanups.push(() => p.close());
  return p;
}

describe('local durability across reloads and crashes', () => {
  it('a reload while offline shows the saved text, the exact pending count and offline; connecting drains it to the relay', async () => {
    const r = await relay();
    const profile = new FailingIdb();

    // Online first: two edits are acknowledged, so they must not count after the reload.
    const first = await tab(r.url, profile).open(DOC);
    append(first, 'acked-1 ');
    append(first, 'acked-2 ');
    await first.flush({ durability: 'relay', timeoutMs: 5_000 });
    expect(first.pending).toBe(0);

    // Then offline: five separate edits (five updates), saved locally.
    first.disconnect();
    for (let i = 0; i < 5; i++) append(first, `offline-${i} `);
    expect(first.pending).toBe(5);
    await first.flush({ durability: 'local', timeoutMs: 5_000 });
    const text = first.doc.getText('t').toString();
    crash(first, profile); // nothing is queued, so this is a reload

    const reloaded = await tab(r.url, new FailingIdb(profile.inner), { connect: false }).open(DOC);
    expect(reloaded.doc.getText('t').toString()).toBe(text);
    expect(reloaded.pending).toBe(5);
    expect(reloaded.status).toBe('offline');
    expect(await relayText(r.url)).toBe('acked-1 acked-2 ');

    reloaded.connect();
    await until(reloaded, 'pending', () => reloaded.pending === 0, 'the reloaded outbox to drain');
    await reloaded.flush({ durability: 'relay', timeoutMs: 5_000 });
    await until(reloaded, 'status', () => reloaded.status === 'synced', 'status synced');
    expect(await relayText(r.url)).toBe(text);

    // The acknowledgement is stored too: after a normal close and reopen nothing is pending.
    await reloaded.close();
    // Drained: no batch record is left (the replica's incarnation record, key NUL + 'incarnation', is not a batch).
    expect((await stored(profile)).outbox.filter((r) => r.key !== '\u0000incarnation')).toEqual([]);
    const again = await tab(r.url, new FailingIdb(profile.inner), { connect: false }).open(DOC);
    expect(again.pending).toBe(0);
    expect(again.doc.getText('t').toString()).toBe(text);
  });

  it('the outbox survives a crash while the relay is unreachable: committed edits are pending after reopening and reach the relay', async () => {
    const r = await relay();
    const proxy = await proxyTo(r, 'reset'); // the relay is unreachable
    const profile = new FailingIdb();
    // Writes commit only when flushed, so the test decides what is committed at the crash.
    const dying = await tab(proxy.url, profile, { localWriteDelayMs: 60_000 }).open(DOC);
    await waitForEvent(proxy, 'connection', () => proxy.accepted >= 2, 'the client to retry the unreachable relay');
    expect(dying.status).not.toBe('synced');

    for (let i = 0; i < 3; i++) append(dying, `saved-${i} `);
    await dying.flush({ durability: 'local', timeoutMs: 5_000 });
    const committed = dying.doc.getText('t').toString();
    append(dying, 'queued-not-committed ');
    expect(dying.pending).toBe(4);
    crash(dying, profile);

    const reopened = await tab(proxy.url, new FailingIdb(profile.inner)).open(DOC);
    // What was committed is there and counted; what was only queued died with the tab.
    expect(reopened.doc.getText('t').toString()).toBe(committed);
    expect(reopened.pending).toBe(3);
    expect(reopened.status).not.toBe('synced');

    proxy.setMode('pass');
    await until(reopened, 'pending', () => reopened.pending === 0, 'the outbox to reach the relay');
    await reopened.flush({ durability: 'relay', timeoutMs: 5_000 });
    expect(await relayText(r.url)).toBe(committed);
  });
});

describe('acknowledged means durable', () => {
  it('what flush({ durability: "relay" }) confirmed survives a SIGKILL of the relay', async () => {
    const data = tempDir('capsync-client-kill-');
    cleanups.push(() => data.remove());
    let relayProcess: RelayProcess = await spawnRelay(['--data', data.dir]);
    cleanups.push(() => killRelay(relayProcess));

    const writer = await client(relayProcess.url).open(DOC);
    const t = writer.doc.getText('t');
    for (let i = 0; i < 50; i++) t.insert(t.length, `<${i}>`);
    await writer.flush({ durability: 'relay', timeoutMs: 10_000 });
    const acknowledged = t.toString();
    await killRelay(relayProcess);
    writer.disconnect();

    relayProcess = await spawnRelay(['--data', data.dir]);
    expect(await relayText(relayProcess.url)).toBe(acknowledged);
  });
});

describe('local storage stays efficient and bounded', () => {
  it('commits a burst of edits in one transaction, not one per edit', async () => {
    const r = await relay();
    const profile = new FailingIdb();
    const handle = await tab(r.url, profile, { connect: false, compactAfterRows: 10_000 }).open(DOC);
    const before = profile.transactions.filter(isBatchWrite).length;
    const t = handle.doc.getText('t');
    for (let i = 0; i < 200; i++) t.insert(t.length, 'x'); // 200 updates, like 200 keystrokes
    await handle.flush({ durability: 'local', timeoutMs: 5_000 });
    const writes = profile.transactions.filter(isBatchWrite).slice(before);
    expect(writes.length).toBeLessThanOrEqual(2);
    expect(writes.every((w) => w.outcome === 'complete')).toBe(true);
    const { updates, outbox } = await stored(profile);
    // The burst is merged into one stored row, while the outbox still counts 200 updates.
    expect(updates).toHaveLength(1);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, updates[0]!.data);
    expect(copy.getText('t').toString()).toBe('x'.repeat(200));
    expect(outbox.reduce((n, rec) => n + rec.count, 0)).toBe(200);
  });

  it('compacts the log once it reaches compactAfterRows', async () => {
    const r = await relay();
    const profile = new FailingIdb();
    const handle = await tab(r.url, profile, { connect: false, compactAfterRows: 10 }).open(DOC);
    for (let i = 0; i < 9; i++) {
      append(handle, `row${i} `);
      await handle.flush({ durability: 'local', timeoutMs: 5_000 });
    }
    expect(await handle.localSize()).toMatchObject({ updates: 9 });
    expect(profile.transactions.filter(isCompaction)).toEqual([]);

    append(handle, 'row9 ');
    await handle.flush({ durability: 'local', timeoutMs: 5_000 }); // the 10th row
    await waitForEvent(profile, 'settled', () => profile.transactions.some((x) => isCompaction(x) && x.outcome === 'complete'), 'a compaction');
    expect(await handle.localSize()).toMatchObject({ updates: 1 });
    const text = handle.doc.getText('t').toString();
    const reloaded = new Y.Doc();
    const { updates } = await stored(profile);
    Y.applyUpdateV2(reloaded, updates[0]!.data);
    expect(reloaded.getText('t').toString()).toBe(text);
  });

  it('compacts the log on open, and opening never grows it', async () => {
    const r = await relay();
    const profile = new FailingIdb();
    const writer = await tab(r.url, profile, { connect: false, compactAfterRows: 10_000 }).open(DOC);
    for (let i = 0; i < 20; i++) {
      append(writer, `row${i} `);
      await writer.flush({ durability: 'local', timeoutMs: 5_000 });
    }
    const text = writer.doc.getText('t').toString();
    const logged = await writer.localSize();
    expect(logged.updates).toBe(20);
    await writer.close();

    const compactions = () => profile.transactions.filter((x) => isCompaction(x) && x.outcome !== 'pending');
    const reader = await tab(r.url, profile, { connect: false, compactAfterRows: 10_000 }).open(DOC);
    await waitForEvent(profile, 'settled', () => compactions().length >= 1, 'the compaction on open');
    const compacted = await reader.localSize();
    expect(compacted.updates).toBe(1);
    expect(compacted.bytes).toBeLessThan(logged.bytes);
    expect(reader.doc.getText('t').toString()).toBe(text);
    await reader.close();

    // A second open finds one row: nothing to merge, nothing changes.
    const third = await tab(r.url, profile, { connect: false }).open(DOC);
    expect(await third.localSize()).toEqual(compacted);
    expect(third.doc.getText('t').toString()).toBe(text);
  });

  it('keeps the log as it is when merging it would make it bigger', async () => {
    const r = await relay();
    // Two tiny rows from two writers: Yjs encodes them smaller than one V2 snapshot of both.
    const other = await client(r.url).open(DOC);
    other.doc.getText('t').insert(0, 'y');
    await other.flush({ durability: 'relay', timeoutMs: 5_000 });

    const profile = new FailingIdb();
    const handle = await tab(r.url, profile, { compactAfterRows: 10_000 }).open(DOC);
    await handle.whenSynced({ timeoutMs: 5_000 });
    await handle.flush({ durability: 'local', timeoutMs: 5_000 }); // the relay's row on its own
    handle.doc.getText('t').insert(0, 'x');
    await handle.flush({ durability: 'relay', timeoutMs: 5_000 });
    await handle.close();

    const { updates } = await stored(profile);
    expect(updates).toHaveLength(2);
    const before = await sizeOf(profile);
    // Precondition: merging really would grow this log (else the test proves nothing).
    const merged = new Y.Doc();
    for (const u of updates) Y.applyUpdate(merged, u.data);
    expect(Y.encodeStateAsUpdateV2(merged).byteLength).toBeGreaterThan(before.bytes);

    const reopened = await tab(r.url, profile, { connect: false }).open(DOC);
    await waitForEvent(profile, 'settled', () => profile.transactions.some((x) => isCompaction(x) && x.outcome !== 'pending'), 'the compaction attempt on open');
    expect(await reopened.localSize()).toEqual(before);
    expect(reopened.doc.getText('t').toString()).toBe(merged.getText('t').toString());
  });
});

async function sizeOf(profile: FailingIdb) {
  const { updates } = await stored(profile);
  return { updates: updates.length, bytes: updates.reduce((n, u) => n + u.data.byteLength, 0) };
}

describe('the CP calls answer unavailable instead of waiting', () => {
  it('flush({ durability: "relay" }) and whenSynced reject with UnavailableError within their timeout when the relay is unreachable', async () => {
    const r = await relay();
    const proxy = await proxyTo(r, 'reset');
    const handle = await client(proxy.url).open(DOC);
    append(handle, 'stranded');

    for (const call of [
      () => handle.flush({ durability: 'relay', timeoutMs: 300 }),
      () => handle.whenSynced({ timeoutMs: 300 }),
    ]) {
      const started = performance.now();
      const err = await call().then(
        () => null,
        (e: unknown) => e,
      );
      const elapsed = performance.now() - started;
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as UnavailableError).code).toBe('unavailable');
      expect(elapsed).toBeGreaterThanOrEqual(290);
      expect(elapsed).toBeLessThan(1_500);
    }
    expect(handle.pending).toBe(1);

    // Not a permanent verdict: once the relay is reachable the same calls succeed.
    proxy.setMode('pass');
    await handle.flush({ durability: 'relay', timeoutMs: 5_000 });
    await handle.whenSynced({ timeoutMs: 5_000 });
  });

  it('whenSynced rejects with UnavailableError when the link is up but the relay has gone silent', async () => {
    const r = await relay();
    const proxy = await proxyTo(r);
    const handle = await client(proxy.url).open(DOC);
    await handle.whenSynced({ timeoutMs: 5_000 });
    proxy.setMode('hold'); // TCP stays up, nothing gets through: the client still thinks it is connected
    const started = performance.now();
    await expect(handle.whenSynced({ timeoutMs: 300 })).rejects.toMatchObject({ code: 'unavailable' });
    expect(performance.now() - started).toBeLessThan(1_500);
    append(handle, 'lost in the void');
    await expect(handle.flush({ durability: 'relay', timeoutMs: 300 })).rejects.toBeInstanceOf(UnavailableError);
  });
});

describe('fixed client bugs (regression tests)', () => {
  // The ack shrinks the outbox in memory only; the stored records go with the next local
  // write, close or pagehide. A crash before any of those brings acknowledged updates back
  // as pending (they drain again on the next connection, but `pending` and the status lie
  // until then, offline for as long as the device stays offline).
  it('updates the relay acknowledged are not pending again after a crash', async () => {
    const r = await relay();
    const profile = new FailingIdb();
    const handle = await tab(r.url, profile, { localWriteDelayMs: 20 }).open(DOC);
    for (let i = 0; i < 3; i++) append(handle, `e${i} `);
    await handle.flush({ durability: 'local', timeoutMs: 5_000 });
    expect((await stored(profile)).outbox.reduce((n, rec) => n + rec.count, 0)).toBe(3);
    await handle.flush({ durability: 'relay', timeoutMs: 5_000 });
    expect(handle.pending).toBe(0);
    const writesAtAck = profile.transactions.filter(isBatchWrite).length;

    // Give the client a write delay (and then some) to store the acknowledgement; no edits follow.
    await waitForEvent(
      profile,
      'settled',
      () => profile.transactions.filter(isBatchWrite).slice(writesAtAck).some((x) => x.outcome === 'complete'),
      'the acknowledgement to be stored',
      1_000,
    ).catch(() => {});
    crash(handle, profile);

    const reopened = await tab(r.url, new FailingIdb(profile.inner), { connect: false }).open(DOC);
    expect(reopened.pending).toBe(0);
  });
});
