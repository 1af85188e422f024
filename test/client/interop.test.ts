/**
 * Interop of @capsync/client through the capsync relay with an unmodified y-websocket (v3)
 * provider on the same document: edits both ways converge (text and map, concurrent and
 * offline edits too), awareness crosses both ways (and leaving removes it), and the capsync
 * client's acknowledgements keep working with a stock peer present (pending drains to 0).
 *
 * Also: the client with the `ws` package as its WebSocket (Node < 22).
 */
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { createClient } from '@capsync/client';
import { nextTurn, TestDevice, whenStatus, type TestSession } from '../support/client-fixture.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { expectConverged, type Schema } from '../support/replicas.js';
import { withTimeout } from '../support/wait.js';

const SCHEMA: Schema = { t: 'text', m: 'map' };
const TIMEOUT_MS = 10_000;

function providerSynced(p: WebsocketProvider): Promise<void> {
  if (p.synced) return Promise.resolve();
  return withTimeout(new Promise<void>((resolve) => p.once('sync', (s: boolean) => s && resolve())), TIMEOUT_MS, 'provider sync');
}

/** Resolves once `check()` holds, re-checking on every update of any of `docs`. */
function untilDocs(docs: Y.Doc[], check: () => boolean, what: string): Promise<void> {
  if (check()) return Promise.resolve();
  let onUpdate!: () => void;
  const done = new Promise<void>((resolve) => {
    onUpdate = () => {
      if (check()) resolve();
    };
    for (const d of docs) d.on('update', onUpdate);
  });
  return withTimeout(done, TIMEOUT_MS, what).finally(() => {
    for (const d of docs) d.off('update', onUpdate);
  });
}

const sameStateVector = (a: Y.Doc, b: Y.Doc) =>
  Buffer.from(Y.encodeStateVector(a)).equals(Buffer.from(Y.encodeStateVector(b))) &&
  JSON.stringify(a.getText('t').toDelta()) === JSON.stringify(b.getText('t').toDelta());

/** Resolves once `check()` holds, re-checking on every awareness change. */
function untilAwareness(awareness: WebsocketProvider['awareness'], check: () => boolean, what: string, timeoutMs = TIMEOUT_MS): Promise<void> {
  if (check()) return Promise.resolve();
  let onChange!: () => void;
  const done = new Promise<void>((resolve) => {
    onChange = () => {
      if (check()) resolve();
    };
    awareness.on('change', onChange);
  });
  return withTimeout(done, timeoutMs, what).finally(() => awareness.off('change', onChange));
}

async function relayState(relay: TestRelay, doc: string): Promise<Uint8Array> {
  const res = await fetch(`${relay.httpUrl}/v1/docs/${encodeURIComponent(doc)}/update`);
  expect(res.status).toBe(200);
  return new Uint8Array(await res.arrayBuffer());
}

describe('a stock y-websocket provider and a capsync client on one document', () => {
  let relay: TestRelay;
  const providers: WebsocketProvider[] = [];
  const sessions: TestSession[] = [];

  const provider = (doc: Y.Doc, room: string) => {
    const p = new WebsocketProvider(relay.url, room, doc, { WebSocketPolyfill: WebSocket as never, connect: true, disableBc: true });
    providers.push(p);
    return p;
  };
  const capsync = async (room: string, kind: 'memory' | 'indexeddb') => {
    const session = await new TestDevice(relay.url, kind, `capsync-${kind}`).open(room);
    sessions.push(session);
    return session.handle;
  };

  beforeEach(async () => {
    relay = await startRelay();
  });
  afterEach(async () => {
    for (const p of providers.splice(0)) p.destroy();
    await Promise.all(sessions.splice(0).map((s) => s.close()));
    await relay.dispose();
  });

  it('edits both ways converge (text + map, concurrent and offline) and pending drains to 0', async () => {
    const room = 'interop-edits';
    const handle = await capsync(room, 'indexeddb');
    const stock = new Y.Doc();
    const p = provider(stock, room);
    await Promise.all([providerSynced(p), whenStatus(handle, 'synced', TIMEOUT_MS)]);

    // capsync → stock
    handle.doc.getText('t').insert(0, 'capsync');
    handle.doc.getMap('m').set('from-capsync', { n: 1 });
    expect(handle.pending).toBeGreaterThan(0);
    await untilDocs([stock], () => stock.getText('t').toString() === 'capsync' && stock.getMap('m').has('from-capsync'), 'capsync edits at stock');
    await handle.flush({ durability: 'relay', timeoutMs: TIMEOUT_MS });
    expect(handle.pending).toBe(0);

    // stock → capsync
    stock.getText('t').insert(0, 'stock+');
    stock.getMap('m').set('from-stock', [1, 2]);
    const nested = new Y.Map<unknown>();
    nested.set('x', 'y');
    stock.getMap('m').set('nested', nested);
    await untilDocs(
      [handle.doc],
      () => handle.doc.getText('t').toString() === 'stock+capsync' && (handle.doc.getMap('m').get('nested') as Y.Map<unknown> | undefined)?.get('x') === 'y',
      'stock edits at capsync',
    );

    // Concurrent: both sides type and set the same keys without waiting for each other.
    for (let i = 0; i < 30; i++) {
      const t1 = handle.doc.getText('t');
      t1.insert(i % (t1.length + 1), `c${i}`);
      handle.doc.getMap('m').set(`k${i % 5}`, `capsync-${i}`);
      const t2 = stock.getText('t');
      t2.insert((i * 7) % (t2.length + 1), `s${i}`);
      if (i % 4 === 0) t2.delete(0, 1);
      stock.getMap('m').set(`k${i % 5}`, `stock-${i}`);
      if (i % 3 === 0) await nextTurn();
    }
    await handle.flush({ durability: 'relay', timeoutMs: TIMEOUT_MS });
    await untilDocs([stock, handle.doc], () => sameStateVector(stock, handle.doc), 'concurrent edits to converge');

    // Offline on both sides, then reconnect.
    handle.disconnect();
    p.disconnect();
    handle.doc.getText('t').insert(0, '[capsync offline]');
    handle.doc.getMap('m').delete('from-stock');
    stock.getText('t').insert(stock.getText('t').length, '[stock offline]');
    stock.getMap('m').set('offline-stock', true);
    expect(handle.pending).toBeGreaterThan(0);
    handle.connect();
    p.connect();
    await handle.flush({ durability: 'relay', timeoutMs: TIMEOUT_MS });
    await untilDocs([stock, handle.doc], () => sameStateVector(stock, handle.doc), 'offline edits to converge');
    await handle.whenSynced({ timeoutMs: TIMEOUT_MS });
    await whenStatus(handle, 'synced', TIMEOUT_MS);

    expect(handle.pending).toBe(0);
    expect(handle.doc.getText('t').toString()).toContain('[capsync offline]');
    expect(handle.doc.getText('t').toString()).toContain('[stock offline]');
    expect(handle.doc.getMap('m').has('from-stock')).toBe(false);
    expect(handle.doc.getMap('m').get('offline-stock')).toBe(true);
    expectConverged(
      [
        { name: 'capsync', update: Y.encodeStateAsUpdate(handle.doc) },
        { name: 'stock', update: Y.encodeStateAsUpdate(stock) },
        { name: 'relay', update: await relayState(relay, room) },
      ],
      SCHEMA,
    );
  });

  it('the capsync client reports pending 0 through its pending event while a stock peer is editing', async () => {
    const room = 'interop-acks';
    const handle = await capsync(room, 'memory');
    const stock = new Y.Doc();
    const p = provider(stock, room);
    await Promise.all([providerSynced(p), whenStatus(handle, 'synced', TIMEOUT_MS)]);
    const seen: number[] = [];
    handle.on('pending', (n) => seen.push(n));
    const drained = withTimeout(
      new Promise<void>((resolve) => handle.on('pending', (n) => n === 0 && resolve())),
      TIMEOUT_MS,
      'pending to drain to 0',
    );
    for (let i = 0; i < 10; i++) {
      handle.doc.getMap('m').set(`c${i}`, i);
      stock.getMap('m').set(`s${i}`, i);
    }
    expect(handle.pending).toBe(10);
    await drained;
    expect(handle.pending).toBe(0);
    expect(Math.max(...seen)).toBe(10);
    await whenStatus(handle, 'synced', TIMEOUT_MS);
    await untilDocs([stock, handle.doc], () => sameStateVector(stock, handle.doc), 'maps to converge');
    expect(handle.doc.getMap('m').size).toBe(20);
  });

  const userAt = (a: WebsocketProvider['awareness'], id: number) =>
    (a.getStates().get(id) as { user?: { name: string; cursor?: number } } | undefined)?.user;

  it('awareness crosses both ways, follows changes, reaches newcomers, and leaving removes it', async () => {
    const room = 'interop-awareness';
    const handle = await capsync(room, 'memory');
    const p = provider(new Y.Doc(), room);
    await Promise.all([providerSynced(p), whenStatus(handle, 'synced', TIMEOUT_MS)]);
    const capsyncId = handle.awareness.clientID;
    const stockId = p.awareness.clientID;

    handle.awareness.setLocalStateField('user', { name: 'capsync' });
    p.awareness.setLocalStateField('user', { name: 'stock' });
    await untilAwareness(p.awareness, () => userAt(p.awareness, capsyncId)?.name === 'capsync', 'capsync presence at stock');
    await untilAwareness(handle.awareness, () => userAt(handle.awareness, stockId)?.name === 'stock', 'stock presence at capsync');

    handle.awareness.setLocalStateField('user', { name: 'capsync', cursor: 7 });
    p.awareness.setLocalStateField('user', { name: 'stock', cursor: 3 });
    await untilAwareness(p.awareness, () => userAt(p.awareness, capsyncId)?.cursor === 7, 'capsync cursor at stock');
    await untilAwareness(handle.awareness, () => userAt(handle.awareness, stockId)?.cursor === 3, 'stock cursor at capsync');

    // A newcomer gets both presences from the relay.
    const p2 = provider(new Y.Doc(), room);
    await providerSynced(p2);
    await untilAwareness(p2.awareness, () => userAt(p2.awareness, capsyncId)?.cursor === 7 && userAt(p2.awareness, stockId)?.cursor === 3, 'presences at newcomer');

    // The capsync client closing removes its presence everywhere.
    await sessions.splice(0)[0]!.close();
    await untilAwareness(p.awareness, () => !p.awareness.getStates().has(capsyncId), 'capsync presence removed at stock');
    await untilAwareness(p2.awareness, () => !p2.awareness.getStates().has(capsyncId), 'capsync presence removed at newcomer');
  });

  it('a stock provider leaving removes its presence at the capsync client', async () => {
    const room = 'interop-awareness-leave';
    const handle = await capsync(room, 'memory');
    const p = provider(new Y.Doc(), room);
    await Promise.all([providerSynced(p), whenStatus(handle, 'synced', TIMEOUT_MS)]);
    p.awareness.setLocalStateField('user', { name: 'stock' });
    await untilAwareness(handle.awareness, () => userAt(handle.awareness, p.awareness.clientID)?.name === 'stock', 'stock presence at capsync');
    p.destroy();
    await untilAwareness(handle.awareness, () => !handle.awareness.getStates().has(p.awareness.clientID), 'stock presence removed at capsync');
  });

  /**
   * Regression (fixed in 924b13a): a stock provider re-broadcasts every awareness change it
   * receives, so the relay counts the capsync client's state as also sent by that connection and
   * removes it when that provider leaves (as the stock y-websocket server does). y-protocols keeps
   * the local state and bumps its clock; the client must announce it again, or its presence is
   * gone for everyone until the 15 s renewal.
   */
  it('the capsync client\'s presence survives a stock provider leaving', async () => {
    const room = 'interop-awareness-echo';
    const handle = await capsync(room, 'memory');
    const p = provider(new Y.Doc(), room);
    await Promise.all([providerSynced(p), whenStatus(handle, 'synced', TIMEOUT_MS)]);
    const capsyncId = handle.awareness.clientID;
    handle.awareness.setLocalStateField('user', { name: 'capsync' });
    await untilAwareness(p.awareness, () => userAt(p.awareness, capsyncId)?.name === 'capsync', 'capsync presence at stock');
    p.destroy();
    await untilAwareness(handle.awareness, () => !handle.awareness.getStates().has(p.awareness.clientID), 'stock presence removed at capsync');
    // A newcomer must still see the capsync client (well before the 15 s renewal).
    const p2 = provider(new Y.Doc(), room);
    await providerSynced(p2);
    await untilAwareness(p2.awareness, () => userAt(p2.awareness, capsyncId)?.name === 'capsync', 'capsync presence at newcomer', 3_000);
  });
});

describe('the client with the ws package as its WebSocket (Node < 22)', () => {
  /**
   * Regression (fixed in 924b13a): RelayLink.dropSocket used to null `onerror` before `close()`.
   * With `ws`, close() of a socket that is still CONNECTING aborts the handshake and emits
   * 'error' on the next tick; with no listener that is an uncaught exception in Node (the
   * convergence test hit it whenever a client disconnected or closed while connecting).
   */
  it('disconnect() while connecting emits no unhandled ws error', async () => {
    // A server that accepts TCP connections and never answers the upgrade: the socket stays CONNECTING.
    const server = net.createServer();
    const held: net.Socket[] = [];
    const accepted = new Promise<void>((resolve) =>
      server.on('connection', (s) => {
        held.push(s);
        resolve();
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;

    const unhandled: unknown[] = [];
    class ProbeWebSocket extends WebSocket {
      // Records an 'error' emitted with no listener instead of throwing it (ws is an EventEmitter).
      override emit(event: string | symbol, ...args: unknown[]): boolean {
        if (event === 'error' && this.listenerCount('error') === 0) {
          unhandled.push(args[0]);
          return false;
        }
        return super.emit(event, ...args);
      }
    }
    const client = createClient({ url: `ws://127.0.0.1:${port}`, storage: 'memory', WebSocket: ProbeWebSocket as never, crossTab: false });
    try {
      const handle = await client.open('doc');
      await withTimeout(accepted, TIMEOUT_MS, 'the client to connect');
      expect(handle.status).toBe('connecting');
      handle.disconnect();
      await nextTurn();
      await nextTurn();
      expect(unhandled.map((e) => (e as Error).message)).toEqual([]);
    } finally {
      await client.close();
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
