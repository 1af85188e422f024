import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import type { CapsyncError, ClientOptions, DocHandle } from '@capsync/client';
import { TestDevice, until, whenStatus, type TestSession } from '../support/client-fixture.js';
import { metricValue, waitForMetricTo } from '../support/relay-observe.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { mintToken } from '../support/tokens.js';
import type { EventEmitter } from 'node:events';
import { waitForEvent, withTimeout } from '../support/wait.js';
import { testScope } from '../support/test-scope.js';

/**
 * Issue 12 P6: Yjs subdocuments of a document opened through capsync. Each loaded subdocument
 * (`subdoc.load()`) gets a handle of its own (`handle.subdocs.get(...)`): its own local replica
 * (IndexedDB through fake-indexeddb here), pending count and status, and its own session on the
 * client's one socket, under its guid. Unloaded subdocuments cost no replica and no session. A
 * stock y-websocket provider on the parent syncs the parent, which holds only the references.
 * Against real relay processes; sessions are counted by the relay's `capsync_connections`.
 */

const SECRET = 'subdocs-test-secret';
const { relay, client, defer } = testScope();

async function open(device: TestDevice, name: string, options: Partial<ClientOptions> = {}): Promise<TestSession> {
  const s = await device.open(name, options);
  defer(() => s.close());
  return s;
}

function sessionsTo(r: RestartableRelay, n: number): Promise<number> {
  return waitForMetricTo(r.httpUrl, 'capsync_connections', {}, (v) => v === n, `${n} sessions`);
}

const pagesOf = (h: DocHandle): Y.Map<Y.Doc> => h.doc.getMap<Y.Doc>('pages');
const text = (h: DocHandle): string => h.doc.getText('t').toString();

/** The handle of page `key` of the notebook: the app's `subdoc.load()`, then the handle. */
async function page(notebook: DocHandle, key: string): Promise<DocHandle> {
  const sub = pagesOf(notebook).get(key);
  if (!sub) throw new Error(`no page ${key}`);
  sub.load();
  return notebook.subdocs.get(sub);
}

/** Resolves once `check()` holds, re-checked on every update of `doc`. */
function untilDoc(doc: Y.Doc, check: () => boolean, what: string): Promise<unknown> {
  return waitForEvent(doc as unknown as EventEmitter, 'update', () => check() || undefined, what);
}

function errorWith(h: DocHandle, code: CapsyncError['code']): Promise<CapsyncError> {
  return withTimeout(
    new Promise<CapsyncError>((resolve) => h.on('error', (err) => err.code === code && resolve(err))),
    10_000,
    `a ${code} error of ${h.name}`,
  );
}

describe('subdocuments', () => {
  it('edited offline in two clients, then reloaded from IndexedDB, converge after heal; unloaded ones open no session; a stock provider syncs the parent', async () => {
    const r = await relay();
    const devA = new TestDevice(r.url, 'indexeddb', 'A');
    const devB = new TestDevice(r.url, 'indexeddb', 'B');

    // Online: A makes a notebook of two pages (subdocuments it created are loaded: a session each).
    const a1 = await open(devA, 'notebook');
    pagesOf(a1.handle).set('p1', new Y.Doc({ guid: 'page-1' }));
    pagesOf(a1.handle).set('p2', new Y.Doc({ guid: 'page-2' }));
    const a1p1 = await a1.handle.subdocs.get('page-1');
    expect(a1p1.doc).toBe(pagesOf(a1.handle).get('p1'));
    expect(a1p1.subdocGuid).toBe('page-1');
    a1p1.doc.getText('t').insert(0, 'A online. ');
    await Promise.all([a1.handle.flush(), a1p1.flush(), (await a1.handle.subdocs.get('page-2')).flush()]);
    expect(a1p1.pending).toBe(0);
    expect(a1.handle.subdocs.guids.sort()).toEqual(['page-1', 'page-2']);

    // B sees the pages, loads none: its parent is its only session.
    const b1 = await open(devB, 'notebook');
    await b1.handle.whenSynced();
    expect(Array.from(pagesOf(b1.handle).values(), (d) => d.guid).sort()).toEqual(['page-1', 'page-2']);
    expect(b1.handle.subdocs.guids).toEqual([]);
    expect(await sessionsTo(r, 4)).toBe(4);
    const b1p1 = await page(b1.handle, 'p1');
    await b1p1.whenSynced();
    expect(text(b1p1)).toBe('A online. ');
    await sessionsTo(r, 5);
    await a1.close();
    await b1.close();
    await sessionsTo(r, 0);

    // Offline (never connected): the pages load from IndexedDB and are edited in both clients.
    const a2 = await open(devA, 'notebook', { connect: false });
    const b2 = await open(devB, 'notebook', { connect: false });
    const [a2p1, a2p2, b2p1, b2p2] = await Promise.all([page(a2.handle, 'p1'), page(a2.handle, 'p2'), page(b2.handle, 'p1'), page(b2.handle, 'p2')]);
    expect(text(a2p1)).toBe('A online. ');
    expect(text(b2p1)).toBe('A online. ');
    expect(text(b2p2)).toBe(''); // never loaded on B: nothing stored for it
    a2p1.doc.getText('t').insert(0, 'A offline. ');
    a2p2.doc.getText('t').insert(0, 'A on page 2. ');
    b2p1.doc.getText('t').insert(text(b2p1).length, 'B offline.');
    b2p2.doc.getText('t').insert(0, 'B on page 2. ');
    pagesOf(a2.handle).set('p3', new Y.Doc({ guid: 'page-3' }));
    for (const h of [a2p1, a2p2, b2p1, b2p2]) {
      await until(h, 'pending', () => h.pending > 0, `${h.subdocGuid} pending`);
      expect(h.status).toBe('offline');
    }
    await Promise.all([a2, b2].map((s) => s.close()));

    // Reloaded from IndexedDB, still offline: the edits and their pending counts are back.
    const a3 = await open(devA, 'notebook', { connect: false });
    const b3 = await open(devB, 'notebook', { connect: false });
    const a3pages = await Promise.all(['p1', 'p2', 'p3'].map((k) => page(a3.handle, k)));
    const b3pages = await Promise.all(['p1', 'p2'].map((k) => page(b3.handle, k)));
    expect(text(a3pages[0]!)).toBe('A offline. A online. ');
    expect(text(b3pages[0]!)).toBe('A online. B offline.');
    expect(text(b3pages[1]!)).toBe('B on page 2. ');
    for (const h of [a3pages[0]!, a3pages[1]!, b3pages[0]!, b3pages[1]!]) expect(h.pending).toBeGreaterThan(0);
    expect(b3.handle.subdocs.guids.sort()).toEqual(['page-1', 'page-2']);

    // Heal: every handle connects; all converge.
    const all = [a3.handle, b3.handle, ...a3pages, ...b3pages];
    for (const h of all) h.connect();
    await Promise.all(all.map((h) => h.flush({ timeoutMs: 15_000 })));
    await Promise.all(all.map((h) => h.whenSynced({ timeoutMs: 15_000 })));
    await Promise.all(all.map((h) => whenStatus(h, 'synced')));
    for (const [i, b] of b3pages.entries()) expect(text(b)).toBe(text(a3pages[i]!));
    expect(text(b3pages[0]!)).toMatch(/A offline\. /);
    expect(text(b3pages[0]!)).toMatch(/B offline\./);
    expect(text(b3pages[1]!)).toMatch(/A on page 2\. /);
    expect(text(b3pages[1]!)).toMatch(/B on page 2\. /);
    expect(Array.from(pagesOf(b3.handle).values(), (d) => d.guid).sort()).toEqual(['page-1', 'page-2', 'page-3']);
    // B has not loaded page-3: no session for it (A: parent and 3 pages, B: parent and 2).
    expect(b3.handle.subdocs.guids).not.toContain('page-3');
    expect(await sessionsTo(r, 7)).toBe(7);

    // A stock y-websocket provider syncs the parent: the page references, not their content.
    const stock = new Y.Doc();
    const provider = new WebsocketProvider(r.url, 'notebook', stock, { WebSocketPolyfill: WebSocket as never, disableBc: true });
    defer(() => provider.destroy());
    await withTimeout(new Promise<void>((resolve) => (provider.synced ? resolve() : provider.once('sync', (s: boolean) => s && resolve()))), 10_000, 'provider sync');
    const stockPages = stock.getMap<Y.Doc>('pages');
    expect(Array.from(stockPages.values(), (d) => d.guid).sort()).toEqual(['page-1', 'page-2', 'page-3']);
    expect(stockPages.get('p1')!.getText('t').toString()).toBe('');
    stock.getMap('meta').set('title', 'from y-websocket');
    await untilDoc(a3.handle.doc, () => a3.handle.doc.getMap('meta').get('title') === 'from y-websocket', 'the title from the provider');
  });

  it('removing or destroying a subdocument closes its session and handle; closing the parent closes the rest', async () => {
    const r = await relay();
    const c = client(r.url);
    const notebook = await c.open('notebook');
    for (const k of ['p1', 'p2', 'p3']) pagesOf(notebook).set(k, new Y.Doc({ guid: `guid-${k}` }));
    const [p1, p2, p3] = await Promise.all(['p1', 'p2', 'p3'].map((k) => notebook.subdocs.get(`guid-${k}`)));
    await Promise.all([notebook, p1!, p2!, p3!].map((h) => h.whenSynced()));
    await sessionsTo(r, 4);
    pagesOf(notebook).delete('p1');
    await sessionsTo(r, 3);
    expect(() => p1!.connect()).toThrow(/closed/);
    p2!.doc.destroy();
    await sessionsTo(r, 2);
    expect(notebook.subdocs.guids).toEqual(['guid-p3']);
    p3!.doc.getText('t').insert(0, 'kept');
    await p3!.flush();
    await notebook.close();
    await sessionsTo(r, 0);
    await expect(notebook.subdocs.get('guid-p3')).rejects.toMatchObject({ code: 'internal' });
  });

  it('a subdocument whose guid the relay would refuse gets no handle: an invalid-doc-name error, and the others carry on', async () => {
    const r = await relay();
    const c = client(r.url);
    const notebook = await c.open('notebook');
    const refused = errorWith(notebook, 'invalid-doc-name');
    pagesOf(notebook).set('bad', new Y.Doc({ guid: '../etc' }));
    pagesOf(notebook).set('good', new Y.Doc({ guid: 'good' }));
    expect((await refused).message).toMatch(/guid/);
    await expect(notebook.subdocs.get('../etc')).rejects.toMatchObject({ code: 'invalid-doc-name' });
    const good = await notebook.subdocs.get('good');
    good.doc.getText('t').insert(0, 'synced');
    await good.flush();
    expect(notebook.subdocs.guids).toEqual(['good']);
    await sessionsTo(r, 2);
  });

  it('without the multiplexed socket, subdocuments stay local with an unsupported error; the parent still syncs', async () => {
    const r = await relay();
    const noMuxRelay = await relay(['--mux', 'off']);
    for (const [what, url, options] of [
      ['multiplex: false', r.url, { multiplex: false }],
      ['a relay with --mux off', noMuxRelay.url, {}],
    ] as const) {
      const c = client(url, options);
      const notebook = await c.open('notebook');
      const unsupported = errorWith(notebook, 'unsupported');
      pagesOf(notebook).set('p1', new Y.Doc({ guid: 'page-1' }));
      const p1 = await notebook.subdocs.get('page-1');
      expect((await unsupported).message, what).toMatch(/page-1/);
      p1.doc.getText('t').insert(0, 'local only');
      await p1.flush({ durability: 'local' });
      await notebook.flush();
      expect(p1.status, what).toBe('offline');
      expect(p1.pending, what).toBe(1);
      await c.close();
    }
    expect(await metricValue(r.httpUrl, 'capsync_docs_loaded')).toBeLessThanOrEqual(1);
  });

  it("a subdocument of a document the token may not read is refused (forbidden), alone; a permitted one syncs", async () => {
    const r = await relay(['--auth-secret', SECRET]);
    const token = await mintToken(SECRET, { sub: 'alice', docs: { 'team/*': 'write' } });
    const c = client(r.url, { token });
    const secret = await c.open('private/notebook');
    const allowed = await c.open('team/notebook');
    const parentRefused = errorWith(secret, 'forbidden');
    pagesOf(secret).set('p1', new Y.Doc({ guid: 'page-1' }));
    pagesOf(allowed).set('p1', new Y.Doc({ guid: 'page-1' }));
    const [secretPage, allowedPage] = await Promise.all([secret.subdocs.get('page-1'), allowed.subdocs.get('page-1')]);
    const pageRefused = errorWith(secretPage, 'forbidden');
    await parentRefused;
    await pageRefused;
    allowedPage.doc.getText('t').insert(0, 'fine');
    await allowedPage.flush();
    expect(secretPage.status).toBe('offline');
    const other = client(r.url, { token });
    const copy = await other.open('team/notebook');
    await copy.whenSynced();
    const copyPage = await page(copy, 'p1');
    await copyPage.whenSynced();
    expect(text(copyPage)).toBe('fine');
  });
});
