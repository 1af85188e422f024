import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { MUX_PATH } from '@capsync/core';
import { createClient, type CapsyncClient, type ClientOptions, type DocHandle, type SyncStatus } from '@capsync/client';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { FaultProxy, type FaultConnection } from '../support/fault-proxy.js';
import { recordingWebSocket } from '../support/recording-websocket.js';
import { waitForEvent, withTimeout } from '../support/wait.js';
import { nextTurn, until } from '../support/client-fixture.js';

/**
 * A client given a list of relays fails over when its relay is unreachable, and nothing is
 * lost or counted twice. The relays are independent (no peering): the new relay gets
 * everything from the client's own sync step 2. A FaultProxy in front of each relay plays the
 * network and shows which relay the client is connected to.
 */

const DOC = 'team/failover';
// The document rides the client's multiplexed socket (one per relay for all its documents),
// and so do the locks (its lock session).
const DOC_PATH = `/${MUX_PATH} `;
const LOCKS_PATH = DOC_PATH;
const { WebSocket, unheard } = recordingWebSocket();

const cleanups: (() => Promise<unknown> | unknown)[] = [];

afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
  expect(unheard.splice(0).map((e) => e.message)).toEqual([]);
});

async function relay(): Promise<TestRelay> {
  const r = await startRelay();
  cleanups.push(() => r.dispose());
  return r;
}

async function restartable(): Promise<RestartableRelay> {
  const r = await RestartableRelay.start();
  cleanups.push(() => r.dispose());
  return r;
}

async function proxy(targetPort: number): Promise<FaultProxy> {
  const p = await FaultProxy.start(targetPort);
  cleanups.push(() => p.close());
  return p;
}

function client(url: string | string[], options: Partial<ClientOptions> = {}): CapsyncClient {
  const c = createClient({
    url,
    storage: 'memory',
    WebSocket: WebSocket as never,
    crossTab: false,
    heartbeatIntervalMs: 2_000,
    heartbeatTimeoutMs: 2_000,
    reconnect: { baseMs: 20, maxMs: 200 },
    ...options,
  });
  cleanups.push(() => c.close());
  return c;
}

/** Connections through `p` to `path` (the document's or the lock endpoint's) that are still open. */
function live(p: FaultProxy, path = DOC_PATH): FaultConnection[] {
  return p.connections.filter((c) => !c.closed && c.head.includes(path));
}

/** The document's text as stored on a relay (HTTP API), with the Y.Doc it was read into. */
async function stored(httpUrl: string): Promise<{ text: string; doc: Y.Doc }> {
  const res = await fetch(`${httpUrl}/v1/docs/${encodeURIComponent(DOC)}/update`);
  expect(res.status).toBe(200);
  const doc = new Y.Doc();
  Y.applyUpdate(doc, new Uint8Array(await res.arrayBuffer()));
  return { text: doc.getText('t').toString(), doc };
}

/**
 * A writer that appends numbered edits, and also types one on each status change except
 * 'synced' while `during` is on (so edits land offline, while connecting, and between the new
 * relay's sync messages). Tracks every `pending` value, to show no update is counted twice.
 */
function writer(handle: DocHandle) {
  const text = handle.doc.getText('t');
  const typed: string[] = [];
  const pendingSeen: number[] = [];
  let during = false;
  const type = (label: string) => {
    const edit = `${label}${typed.length} `;
    typed.push(edit);
    text.insert(text.length, edit);
  };
  handle.on('pending', (n) => pendingSeen.push(n));
  handle.on('status', (s: SyncStatus) => {
    if (during && s !== 'synced') type(`[${s}]`);
  });
  return {
    type,
    typed,
    pendingSeen,
    /** Types on status changes from now until `stop()`. */
    duringSwitch: () => (during = true),
    stop: () => (during = false),
    expected: () => typed.join(''),
  };
}

/** Synced on the relay behind `p`, with nothing pending. */
async function settledOn(handle: DocHandle, p: FaultProxy, what: string): Promise<void> {
  await until(handle, 'status', () => handle.status === 'synced' && handle.pending === 0 && live(p).length === 1, what, 15_000);
}

/** A third client reads the document from `url` and must hold exactly what `handle` holds. */
async function expectSameContentFrom(url: string, handle: DocHandle, expected: string): Promise<void> {
  const reader = await client(url).open(DOC);
  await reader.whenSynced({ timeoutMs: 5_000 });
  expect(reader.doc.getText('t').toString()).toBe(expected);
  expect(Y.encodeStateVector(reader.doc)).toEqual(Y.encodeStateVector(handle.doc));
  expect(reader.doc.toJSON()).toEqual(handle.doc.toJSON());
  expect(reader.pending).toBe(0);
}

describe('failover between relays', () => {
  it('A is reset: the client moves to B while the user keeps typing; B ends up with every edit, nothing pending', async () => {
    const [rA, rB] = await Promise.all([relay(), relay()]);
    const [pA, pB] = await Promise.all([proxy(rA.port), proxy(rB.port)]);
    const handle = await client([pA.url, pB.url]).open(DOC);
    const w = writer(handle);
    w.type('a');
    w.type('a');
    await settledOn(handle, pA, 'synced on A, the first URL');
    expect(handle.relayUrl).toBe(pA.url);
    expect(pB.accepted).toBe(0);

    // A becomes unreachable: its connection is reset, and so is every new one.
    w.duringSwitch();
    pA.setMode('reset');
    w.type('cut');
    const onB = waitForEvent(pB, 'connection', () => pB.accepted > 0 || undefined, 'an attempt on B');
    await onB;
    w.type('b-accepted');
    await settledOn(handle, pB, 'synced on B');
    expect(handle.relayUrl).toBe(pB.url);
    w.stop();
    w.type('after');
    await until(handle, 'pending', () => handle.pending === 0, 'the last edit durable on B');

    // Typed offline, while connecting and while B's sync was under way.
    expect(w.typed.filter((t) => t.startsWith('[')).length).toBeGreaterThanOrEqual(2);
    expect(handle.doc.getText('t').toString()).toBe(w.expected());
    expect((await stored(rB.httpUrl)).text).toBe(w.expected());
    // A got what it acknowledged before the cut, and nothing after.
    expect((await stored(rA.httpUrl)).text).toBe('a0 a1 ');
    // Counted once each: the count never exceeded the edits made, and ends at exactly 0.
    expect(Math.max(...w.pendingSeen)).toBeLessThanOrEqual(w.typed.length);
    expect(handle.pending).toBe(0);
    await expectSameContentFrom(rB.url, handle, w.expected());
    // Still on B, A never reached again.
    expect(live(pB)).toHaveLength(1);
    expect(live(pA)).toHaveLength(0);
  });

  it('A goes half-open: the heartbeat moves the client to B, and A’s late acks never count for B’s messages', async () => {
    const [rA, rB] = await Promise.all([relay(), relay()]);
    const [pA, pB] = await Promise.all([proxy(rA.port), proxy(rB.port)]);
    const heartbeat = { heartbeatIntervalMs: 500, heartbeatTimeoutMs: 500 };
    const handle = await client([pA.url, pB.url], heartbeat).open(DOC);
    const w = writer(handle);
    // Many messages on A's connection, so its late acks name high sequence numbers.
    for (let i = 0; i < 10; i++) {
      w.type('a');
      await nextTurn();
    }
    await settledOn(handle, pA, 'synced on A');
    const [connA] = live(pA);

    // The next edit reaches A; A stores it and acks, but from then on nothing gets through:
    // its ack is held in the network, and the TCP connection stays up.
    let downAtHold = -1;
    pA.once('read', () => {
      pA.setMode('hold');
      downAtHold = connA!.chunksDown;
    });
    w.type('held');
    w.duringSwitch();
    // A's answer to it (the ack) comes after the hold began: it waits in the network.
    await waitForEvent(pA, 'read', () => (downAtHold >= 0 && connA!.chunksDown > downAtHold) || undefined, 'A’s ack, held');
    w.type('while-held');
    await settledOn(handle, pB, 'synced on B after the heartbeat gave up on A');
    w.stop();
    expect(connA!.closed).toBe(false); // the heartbeat noticed, not TCP
    expect((await stored(rB.httpUrl)).text).toBe(w.expected());

    // Now B's acks are held, so an edit on B stays pending, and A's network heals: A's held
    // ack (and whatever A answers to the client's held frames) arrives on the dead socket.
    await handle.whenSynced({ timeoutMs: 5_000 }); // a fresh answer from B: its heartbeat starts over
    pB.setMode('hold');
    w.type('b-held');
    await until(handle, 'pending', () => handle.pending === 1, 'the edit on B pending');
    pA.setMode('pass');
    // Closed on both sides: the client read all A sent before its close frame, acks included.
    await waitForEvent(pA, 'closed', () => connA!.closed || undefined, 'A’s old connection to finish closing', 5_000);
    expect(handle.pending).toBe(1);

    pB.setMode('pass');
    await settledOn(handle, pB, 'synced on B again');
    expect(handle.pending).toBe(0);
    expect((await stored(rB.httpUrl)).text).toBe(w.expected());
    expect(Math.max(...w.pendingSeen)).toBeLessThanOrEqual(w.typed.length);
    await expectSameContentFrom(rB.url, handle, w.expected());
  });

  it('a relay process is killed: the client moves to B and stays; when B shuts down later it comes back to the restarted A', async () => {
    const [rA, rB] = await Promise.all([restartable(), restartable()]);
    const [pA, pB] = await Promise.all([proxy(Number(new URL(rA.httpUrl).port)), proxy(Number(new URL(rB.httpUrl).port))]);
    const handle = await client([pA.url, pB.url]).open(DOC);
    const w = writer(handle);
    w.type('a');
    await settledOn(handle, pA, 'synced on A');

    // SIGKILL: a crash. Only acknowledged updates are promised to survive; all were.
    w.duringSwitch();
    await rA.stop('SIGKILL');
    w.type('a-killed');
    await settledOn(handle, pB, 'synced on B after A died');
    w.stop();
    w.type('on-b');
    await until(handle, 'pending', () => handle.pending === 0, 'the edit on B durable');
    expect((await rB.docJson(DOC)) as unknown).toEqual({ t: w.expected() });

    // A comes back with its data. The client stays on B, which works.
    await rA.start();
    expect(await rA.docJson(DOC)).toEqual({ t: 'a0 ' });
    const attemptsOnA = pA.accepted;
    w.type('still-on-b');
    await until(handle, 'pending', () => handle.pending === 0, 'the edit on B durable');
    await handle.whenSynced({ timeoutMs: 5_000 });
    expect(pA.accepted).toBe(attemptsOnA);
    expect(live(pB)).toHaveLength(1);

    // B shuts down gracefully (GoingAway): back to A, which lacks everything typed on B.
    w.duringSwitch();
    await rB.stop('SIGTERM');
    w.type('b-gone');
    await settledOn(handle, pA, 'synced on A again');
    w.stop();
    expect(await rA.docJson(DOC)).toEqual({ t: w.expected() });
    expect(handle.pending).toBe(0);
    expect(Math.max(...w.pendingSeen)).toBeLessThanOrEqual(w.typed.length);
    await expectSameContentFrom(rA.url, handle, w.expected());
  });

  it('the lock connection fails over too', async () => {
    const [rA, rB] = await Promise.all([relay(), relay()]);
    const [pA, pB] = await Promise.all([proxy(rA.port), proxy(rB.port)]);
    const c = client([pA.url, pB.url]);
    const first = await c.locks.acquire('stock/1', { ttlMs: 5_000 });
    expect(first.token).toBeGreaterThan(0);
    expect(live(pA, LOCKS_PATH)).toHaveLength(1);
    expect(pB.accepted).toBe(0);

    pA.setMode('reset');
    await waitForEvent(pB, 'head', () => live(pB, LOCKS_PATH).length === 1 || undefined, 'the lock connection on B');
    const second = await withTimeout(c.locks.acquire('stock/2', { ttlMs: 5_000 }), 5_000, 'an acquire through B');
    expect(second.token).toBeGreaterThan(0);
    await second.release();
    expect(live(pB, LOCKS_PATH)).toHaveLength(1);
  });
});
