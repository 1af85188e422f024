import * as jose from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createClient, type CapsyncClient, type CapsyncError, type ClientOptions, type DocHandle, type DocHandleEvents } from '@capsync/client';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { FaultProxy, type FaultMode } from '../support/fault-proxy.js';
import { recordingWebSocket } from '../support/recording-websocket.js';
import { metricValue } from '../support/relay-observe.js';
import { waitForEvent } from '../support/wait.js';
import { until } from '../support/client-fixture.js';
import { signToken } from '../support/tokens.js';

/**
 * The client's link to the relay: backoff, heartbeat, tokens, refusals, presence. A TCP
 * proxy between client and relay plays the network (see FaultProxy's modes) and counts every
 * connection attempt the way the relay's side sees it.
 */

const DOC = 'team/transport';
const SECRET = 'transport-test-secret-0123456789';
const { WebSocket } = recordingWebSocket();

const clients: CapsyncClient[] = [];
const cleanups: (() => Promise<unknown> | unknown)[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  for (const f of cleanups.splice(0).reverse()) await f();
});

function client(url: string, options: Partial<ClientOptions> = {}): CapsyncClient {
  const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as never, crossTab: false, ...options });
  clients.push(c);
  return c;
}

async function relay(options: Parameters<typeof startRelay>[0] = {}): Promise<TestRelay> {
  const r = await startRelay(options);
  cleanups.push(() => r.dispose());
  return r;
}

async function proxy(targetPort: number, mode: FaultMode = 'pass'): Promise<FaultProxy> {
  const p = await FaultProxy.start(targetPort, { mode });
  cleanups.push(() => p.close());
  return p;
}

async function sign(docs: Record<string, 'read' | 'write'>, claims: jose.JWTPayload = {}, secret = SECRET): Promise<string> {
  // Tokens must expire (the relay refuses them otherwise): in ten minutes unless `claims` say.
  return signToken(secret, { sub: 'tester', exp: Math.floor(Date.now() / 1000) + 600, docs, ...claims });
}


function errorsOf(handle: DocHandle): CapsyncError[] {
  const errors: CapsyncError[] = [];
  handle.on('error', (e) => errors.push(e));
  return errors;
}

/**
 * A bounded negative check: resolves true if `check()` became true within `ms`, false if not.
 * Used only to show that something (a reconnect) does NOT happen; `ms` is chosen so that the
 * unwanted behaviour would show many times over within it.
 */
async function happensWithin(emitter: FaultProxy, check: () => boolean, ms: number): Promise<boolean> {
  return waitForEvent(emitter, 'connection', () => check() || undefined, 'never', ms).then(
    () => true,
    () => false,
  );
}

/** As happensWithin, re-checking on every chunk read through the proxy (frames on an open socket). */
async function happensWithinRead(emitter: FaultProxy, check: () => boolean, ms: number): Promise<boolean> {
  return waitForEvent(emitter, 'read', () => check() || undefined, 'never', ms).then(
    () => true,
    () => false,
  );
}

/** The JWT a WebSocket upgrade request offered as a `capsync.jwt.<token>` sub-protocol. */
function tokenIn(head: string): string | undefined {
  return /capsync\.jwt\.([\w-]+\.[\w-]+\.[\w-]+)/.exec(head)?.[1];
}

/**
 * How late a retry may be: the failed attempt's own round trip (a local TCP connect and its
 * reset) plus timer slack on a busy machine. Small next to the differences the scripted
 * backoff checks rely on (a missing cap, jitter or reset is off by 400 ms or more there).
 */
const SLACK_MS = 300;

const gaps = (p: FaultProxy) => p.connections.slice(1).map((c, i) => c.acceptedAt - p.connections[i]!.acceptedAt);

describe('reconnecting', () => {
  it('retries with exponential backoff, full jitter and a cap, and starts again from the base after a healthy connection', async () => {
    const r = await relay();
    const net = await proxy(r.port, 'reset'); // the relay is unreachable: every attempt is reset
    // Scripted draws of the jitter: the delay must be draw × min(maxMs, baseMs·2^n).
    const draws = [0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.5, 0, 0.25];
    let n = 0;
    vi.spyOn(Math, 'random').mockImplementation(() => draws[n++] ?? 0.9999);
    const baseMs = 100;
    const maxMs = 800;
    const handle = await client(net.url, { reconnect: { baseMs, maxMs } }).open(DOC);

    await waitForEvent(net, 'connection', () => net.accepted >= draws.length + 1, 'nine connection attempts', 10_000);
    const expected = draws.map((d, i) => Math.floor(d * Math.min(maxMs, baseMs * 2 ** i)));
    expect(expected).toEqual([99, 199, 399, 799, 799, 400, 0, 200]);
    const measured = gaps(net).slice(0, draws.length);
    for (const [i, gap] of measured.entries()) {
      // Never early; late only by the failed attempt's own round trip and timer slack.
      expect(gap, `gap ${i} of ${measured.map(Math.round).join(', ')}`).toBeGreaterThanOrEqual(expected[i]! - 2);
      expect(gap, `gap ${i} of ${measured.map(Math.round).join(', ')}`).toBeLessThan(expected[i]! + SLACK_MS);
    }

    // The relay comes back: the client connects at its next attempt and syncs.
    net.setMode('pass');
    await until(handle, 'status', () => handle.status === 'synced', 'synced');
    // The link drops again: the first retry is bounded by baseMs again, not by maxMs.
    const attempts = net.accepted;
    const droppedAt = performance.now();
    net.setMode('reset');
    await waitForEvent(net, 'connection', () => net.accepted > attempts, 'a reconnect attempt');
    const firstRetry = net.connections[attempts]!.acceptedAt - droppedAt;
    expect(firstRetry).toBeLessThan(baseMs + SLACK_MS); // 0.9999 × maxMs (799 ms) had it not reset
  });

  it('keeps retrying a relay that hangs up, each retry within its backoff bound (real Math.random)', async () => {
    const r = await relay();
    const net = await proxy(r.port, 'drop'); // every connection is closed at once (FIN)
    const baseMs = 20;
    const maxMs = 80;
    await client(net.url, { reconnect: { baseMs, maxMs } }).open(DOC);
    await waitForEvent(net, 'connection', () => net.accepted >= 12, 'twelve connection attempts', 10_000);
    const measured = gaps(net);
    for (const [i, gap] of measured.entries()) {
      expect(gap, `gap ${i} of ${measured.map(Math.round).join(', ')}`).toBeLessThan(Math.min(maxMs, baseMs * 2 ** i) + SLACK_MS);
    }
  });
});

describe('heartbeat', () => {
  it('declares a half-open link offline within heartbeatIntervalMs + heartbeatTimeoutMs, then reconnects and syncs what was typed meanwhile', async () => {
    const r = await relay();
    const net = await proxy(r.port);
    const heartbeatIntervalMs = 200;
    const heartbeatTimeoutMs = 200;
    const handle = await client(net.url, { heartbeatIntervalMs, heartbeatTimeoutMs, reconnect: { baseMs: 50, maxMs: 100 } }).open(DOC);
    await until(handle, 'status', () => handle.status === 'synced', 'synced');
    const text = handle.doc.getText('t');

    // An idle, healthy link is kept: pings are answered (several intervals pass, one connection).
    const first = net.connections[0]!;
    const upBefore = first.chunksUp;
    await waitForEvent(net, 'read', () => first.chunksUp >= upBefore + 3 || undefined, 'three heartbeats', 5_000);
    expect(net.accepted).toBe(1);
    expect(handle.status).toBe('synced');

    // Half-open: TCP stays up on both sides, nothing gets through either way.
    net.setMode('hold');
    const heldAt = performance.now();
    text.insert(0, 'typed while held; ');
    await until(handle, 'status', () => handle.status === 'offline', 'offline', 5_000);
    const detectedAfter = performance.now() - heldAt;
    expect(detectedAfter).toBeLessThan(heartbeatIntervalMs + heartbeatTimeoutMs + 500);
    // It was the heartbeat, not a TCP close: the held connection is still open.
    expect(first.closed).toBe(false);
    text.insert(text.length, 'typed while offline');
    expect(handle.pending).toBe(2);

    net.setMode('pass');
    await until(handle, 'pending', () => handle.pending === 0, 'pending 0 after reconnecting');
    await until(handle, 'status', () => handle.status === 'synced', 'synced again');
    const reader = await client(r.url).open(DOC);
    await reader.whenSynced({ timeoutMs: 5_000 });
    expect(reader.doc.getText('t').toString()).toBe('typed while held; typed while offline');
  });
});

describe('tokens', () => {
  it('calls the token function before every connect and reconnect, and connects with the fresh token', async () => {
    const r1 = await relay({ authSecret: SECRET });
    const net = await proxy(r1.port);
    const issued: string[] = [];
    const token = async () => {
      const t = await sign({ [DOC]: 'write' }, { jti: `token-${issued.length}` });
      issued.push(t);
      return t;
    };
    const handle = await client(net.url, { token, reconnect: { baseMs: 20, maxMs: 60 } }).open(DOC);
    await until(handle, 'status', () => handle.status === 'synced', 'synced');

    // Twice the network resets the connection…
    for (let round = 0; round < 2; round++) {
      net.setMode('reset');
      await until(handle, 'status', () => handle.status !== 'synced', 'the link to drop');
      const attempts = net.accepted;
      await waitForEvent(net, 'connection', () => net.accepted > attempts + 1, 'attempts while the network is down');
      net.setMode('pass');
      await until(handle, 'status', () => handle.status === 'synced', `synced after reset ${round}`);
    }
    // …then the relay restarts (same data, new process, the proxy now points at it).
    await r1.close();
    await until(handle, 'status', () => handle.status !== 'synced', 'the link to drop on relay shutdown');
    const r2 = await relay({ authSecret: SECRET, dataDir: r1.dataDir });
    net.setTarget(r2.port);
    await until(handle, 'status', () => handle.status === 'synced', 'synced with the restarted relay');

    // One token per attempt, failed attempts included, and each connection used its own.
    expect(issued.length).toBe(net.accepted);
    const offered = net.connections.map((c) => tokenIn(c.head)).filter((t): t is string => t !== undefined);
    expect(offered.length).toBeGreaterThanOrEqual(4);
    expect(new Set(offered).size).toBe(offered.length);
    for (const t of offered) expect(issued).toContain(t);
    // The connection in use carries the newest token.
    expect(offered.at(-1)).toBe(issued.at(-1));
  });
});

describe('refusals', () => {
  it('forbidden (a socket per document): an error event, offline, and no reconnect storm; connect() tries exactly once more', async () => {
    const r = await relay({ authSecret: SECRET });
    const net = await proxy(r.port);
    let tokenCalls = 0;
    const token = () => {
      tokenCalls++;
      return sign({ 'someone-else/*': 'write' });
    };
    // Short backoff: a client that retried would hit the relay dozens of times in the window below.
    const handle = await client(net.url, { token, reconnect: { baseMs: 5, maxMs: 20 }, multiplex: false }).open(DOC);
    const errors = errorsOf(handle);
    await until(handle, 'error', () => errors.length > 0, 'an error event');
    expect(errors.map((e) => e.code)).toEqual(['forbidden']);
    await until(handle, 'status', () => handle.status === 'offline', 'offline');

    expect(await happensWithin(net, () => net.accepted > 1, 400)).toBe(false);
    expect(net.accepted).toBe(1);
    expect(tokenCalls).toBe(1);
    expect(handle.status).toBe('offline');

    handle.connect();
    await until(handle, 'error', () => errors.length > 1, 'the second refusal');
    expect(errors.map((e) => e.code)).toEqual(['forbidden', 'forbidden']);
    expect(await happensWithin(net, () => net.accepted > 2, 200)).toBe(false);
    expect(net.accepted).toBe(2);
  });

  it('forbidden (a session of the multiplexed socket): an error event, offline, and no reopen storm; connect() opens it exactly once more', async () => {
    const r = await relay({ authSecret: SECRET });
    const net = await proxy(r.port);
    const token = () => sign({ 'someone-else/*': 'write' });
    const refused = () => metricValue(r.httpUrl, 'capsync_refusals_total', { reason: 'forbidden' });
    const handle = await client(net.url, { token, reconnect: { baseMs: 5, maxMs: 20 } }).open(DOC);
    const errors = errorsOf(handle);
    await until(handle, 'error', () => errors.length > 0, 'an error event');
    expect(errors.map((e) => e.code)).toEqual(['forbidden']);
    await until(handle, 'status', () => handle.status === 'offline', 'offline');

    // A reopen would be a frame up the one socket: none comes (its heartbeat is 10 s away).
    expect(await happensWithinRead(net, () => errors.length > 1, 400)).toBe(false);
    expect(await refused()).toBe(1);
    expect(handle.status).toBe('offline');

    handle.connect();
    await until(handle, 'error', () => errors.length > 1, 'the second refusal');
    expect(errors.map((e) => e.code)).toEqual(['forbidden', 'forbidden']);
    expect(await happensWithinRead(net, () => errors.length > 2, 200)).toBe(false);
    expect(await refused()).toBe(2);
    // The socket was fine all along: one, kept.
    expect(net.accepted).toBe(1);
  });

  it('unauthorized with a fixed token: an error event and no retry', async () => {
    const r = await relay({ authSecret: SECRET });
    const net = await proxy(r.port);
    const badToken = await sign({ [DOC]: 'write' }, {}, 'not-the-relay-secret-0123456789');
    const handle = await client(net.url, { token: badToken, reconnect: { baseMs: 5, maxMs: 20 } }).open(DOC);
    const errors = errorsOf(handle);
    await until(handle, 'error', () => errors.length > 0, 'an error event');
    expect(errors.map((e) => e.code)).toEqual(['unauthorized']);
    await until(handle, 'status', () => handle.status === 'offline', 'offline');
    expect(await happensWithin(net, () => net.accepted > 1, 400)).toBe(false);
    expect(net.accepted).toBe(1);
  });

  it('unauthorized with a token function: retries, with backoff, asking for a token each time', async () => {
    const r = await relay({ authSecret: SECRET });
    const net = await proxy(r.port);
    vi.spyOn(Math, 'random').mockReturnValue(0.9999);
    let tokenCalls = 0;
    const token = () => {
      tokenCalls++;
      return sign({ [DOC]: 'write' }, {}, 'not-the-relay-secret-0123456789');
    };
    const handle = await client(net.url, { token, reconnect: { baseMs: 40, maxMs: 80 } }).open(DOC);
    const errors = errorsOf(handle);
    await waitForEvent(net, 'connection', () => net.accepted >= 4, 'four attempts');
    await until(handle, 'error', () => errors.length >= 3, 'three refusals');
    expect(new Set(errors.map((e) => e.code))).toEqual(new Set(['unauthorized']));
    // Spaced by the backoff (0.9999 × 40, 80, 80 ms), not a storm.
    const measured = gaps(net).slice(0, 3);
    [39, 79, 79].forEach((min, i) => expect(measured[i], `gaps ${measured.map(Math.round).join(', ')}`).toBeGreaterThanOrEqual(min - 2));
    expect(tokenCalls).toBeGreaterThanOrEqual(net.accepted);
    expect(tokenCalls).toBeLessThanOrEqual(net.accepted + 1); // one may be in flight
  });

  it('read-only: the document syncs down, local edits stay local with a read-only error', async () => {
    const r = await relay({ authSecret: SECRET });
    const writer = await client(r.url, { token: () => sign({ [DOC]: 'write' }) }).open(DOC);
    writer.doc.getText('t').insert(0, 'from the writer');
    await writer.flush({ durability: 'relay', timeoutMs: 5_000 });

    const handle = await client(r.url, { token: () => sign({ [DOC]: 'read' }) }).open(DOC);
    const errors = errorsOf(handle);
    await handle.whenSynced({ timeoutMs: 5_000 });
    expect(handle.doc.getText('t').toString()).toBe('from the writer');
    expect(handle.status).toBe('synced');

    handle.doc.getText('t').insert(0, 'local only: ');
    await until(handle, 'error', () => errors.length > 0, 'a read-only error');
    expect(errors.map((e) => e.code)).toEqual(['read-only']);
    expect(handle.doc.getText('t').toString()).toBe('local only: from the writer');
    expect(handle.pending).toBe(1);
    expect(handle.status).toBe('syncing'); // connected and caught up, but not everything is durable
    await expect(handle.flush({ durability: 'relay', timeoutMs: 200 })).rejects.toMatchObject({ code: 'unavailable' });

    // Never applied on the relay; still connected, live edits of the writer keep arriving.
    writer.doc.getText('t').insert(writer.doc.getText('t').length, ' + more');
    await writer.flush({ durability: 'relay', timeoutMs: 5_000 });
    await handle.whenSynced({ timeoutMs: 5_000 });
    expect(handle.doc.getText('t').toString()).toBe('local only: from the writer + more');
    expect(writer.doc.getText('t').toString()).toBe('from the writer + more');
    const stored = await fetch(`${r.httpUrl}/v1/docs/${encodeURIComponent(DOC)}`, {
      headers: { authorization: `Bearer ${await sign({ [DOC]: 'read' })}` },
    });
    expect(await stored.json()).toEqual({ t: 'from the writer + more' });
  });
});

describe('presence', () => {
  it('two clients see each other; closing one removes its state from the other at once', async () => {
    const r = await relay();
    const a = await client(r.url).open(DOC);
    const b = await client(r.url).open(DOC);
    const aId = a.doc.clientID;
    const bId = b.doc.clientID;

    const seen = (h: DocHandle, id: number, check: (s: Record<string, unknown> | undefined) => boolean, what: string) =>
      new Promise<void>((resolve, reject) => {
        if (check(h.awareness.getStates().get(id))) return resolve();
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 5_000);
        const onChange = () => {
          if (!check(h.awareness.getStates().get(id))) return;
          clearTimeout(timer);
          h.awareness.off('change', onChange);
          resolve();
        };
        h.awareness.on('change', onChange);
      });

    a.awareness.setLocalState({ user: 'ada', cursor: 3 });
    b.awareness.setLocalState({ user: 'bob' });
    await seen(b, aId, (s) => s?.['user'] === 'ada' && s['cursor'] === 3, "b to see a's state");
    await seen(a, bId, (s) => s?.['user'] === 'bob', "a to see b's state");
    a.awareness.setLocalStateField('cursor', 7);
    await seen(b, aId, (s) => s?.['cursor'] === 7, "b to see a's cursor move");

    const removed = seen(b, aId, (s) => s === undefined, "a's state removed at b");
    const closedAt = performance.now();
    await a.close();
    await removed;
    // Well before awareness' own 30 s timeout: the close announced it.
    expect(performance.now() - closedAt).toBeLessThan(3_000);
    expect(b.awareness.getStates().get(bId)).toEqual({ user: 'bob' });
  });

  // The relay also drops a closed connection's presence by itself, which would hide a client
  // that forgot to clear its own. Between tabs there is no relay: only the client's own
  // announcement on close can remove it.
  it('between tabs, with no relay to clean up: closing a tab removes its presence from the other', async () => {
    const doc = 'presence/tabs-only';
    const a = await client('ws://127.0.0.1:9', { crossTab: true, connect: false }).open(doc);
    const b = await client('ws://127.0.0.1:9', { crossTab: true, connect: false }).open(doc);
    const aId = a.doc.clientID;
    const states = () => b.awareness.getStates();
    const change = (check: () => boolean, what: string) =>
      new Promise<void>((resolve, reject) => {
        if (check()) return resolve();
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 5_000);
        const onChange = () => {
          if (!check()) return;
          clearTimeout(timer);
          b.awareness.off('change', onChange);
          resolve();
        };
        b.awareness.on('change', onChange);
      });
    a.awareness.setLocalState({ user: 'ada' });
    await change(() => (states().get(aId) as { user?: string } | undefined)?.user === 'ada', "a's state at b");
    const closedAt = performance.now();
    await a.close();
    await change(() => !states().has(aId), "a's state removed at b");
    expect(performance.now() - closedAt).toBeLessThan(3_000);
    expect(b.status).toBe('offline');
  });
});

describe('closing while connecting', () => {
  it('closing a document while its WebSocket is still connecting leaves no unheard socket error (ws on Node would throw it)', async () => {
    const r = await relay();
    const net = await proxy(r.port, 'hold'); // the upgrade is never answered: the socket stays CONNECTING
    const recorded = recordingWebSocket();
    const c = client(net.url, { WebSocket: recorded.WebSocket as never });
    const handle = await c.open(DOC);
    await waitForEvent(net, 'connection', () => net.accepted >= 1, 'the connection attempt');
    expect(handle.status).toBe('connecting');
    await c.close();
    // ws emits that error on process.nextTick after close(); let the tick pass.
    await new Promise((resolve) => setImmediate(resolve));
    expect(recorded.unheard.map((e) => e.message)).toEqual([]);
  });
});
