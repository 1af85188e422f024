import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import * as Y from 'yjs';
import { CloseCode, decodeMessage, encodeMessage, type CapsyncError, type Message } from '@capsync/core';
import { createClient } from '../src/client.js';
import { RelayLink, type RelayLinkOptions } from '../src/sync/relay-link.js';
import type { WebSocketConstructor, WebSocketLike } from '../src/sync/websocket-like.js';

/**
 * RelayLink with several relay URLs, against a scripted WebSocket and fake timers: which relay
 * each attempt goes to, and exactly when. Real relays: test/client/failover.test.ts.
 */

/** A WebSocket the test drives: `accept()`, `fail()`, `receive()`; records what the client sent. */
class FakeSocket implements WebSocketLike {
  binaryType = 'blob';
  readyState = 0;
  readonly bufferedAmount = 0;
  readonly sent: Message[] = [];
  readonly createdAt = Date.now();
  /** Set when the client closed it (code, reason). */
  closedByClient: { code?: number; reason?: string } | null = null;
  private readonly listeners = new Map<string, ((event: never) => void)[]>();

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {}

  addEventListener(type: string, listener: (event: never) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  send(data: Uint8Array): void {
    this.sent.push(decodeMessage(data));
  }
  close(code?: number, reason?: string): void {
    this.readyState = 3;
    this.closedByClient = { code, reason };
  }

  // ---- the relay's side ----
  accept(): void {
    this.readyState = 1;
    this.dispatch('open', {});
  }
  fail(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.dispatch('close', { code, reason });
  }
  receive(msg: Message): void {
    this.dispatch('message', { data: encodeMessage(msg) });
  }
  /** The relay's path part: `/<doc>` of `ws://host/<doc>`. */
  get relay(): string {
    return this.url.slice(0, this.url.lastIndexOf('/'));
  }
  private dispatch(type: string, event: unknown): void {
    for (const listener of this.listeners.get(type) ?? []) listener(event as never);
  }
}

/** A WebSocket constructor that records every socket it makes. */
function fakeWebSocket(): { WebSocket: WebSocketConstructor; sockets: FakeSocket[] } {
  const sockets: FakeSocket[] = [];
  class Recorded extends FakeSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  return { WebSocket: Recorded, sockets };
}

const A = 'ws://relay-a.test';
const B = 'wss://relay-b.test:8443';
const C = 'ws://relay-c.test';
const BASE_MS = 100;
const MAX_MS = 1_000;
const INTERVAL_MS = 1_000;
const TIMEOUT_MS = 500;
/** With random() = 0.5: the failover delay within a round, and backoff bounds halved. */
const FAILOVER_MS = 50;

interface Harness {
  link: RelayLink;
  sockets: FakeSocket[];
  opens: [number, string][];
  errors: CapsyncError[];
  messages: Message[];
  /** The newest socket. */
  last(): FakeSocket;
  /** Asserts the next attempt starts exactly `ms` after now (not a millisecond earlier), to `relay`. */
  expectNextAttempt(ms: number, relay: string): Promise<FakeSocket>;
}

const links: RelayLink[] = [];

function harness(urls: string[], options: Partial<RelayLinkOptions> = {}): Harness {
  const { WebSocket, sockets } = fakeWebSocket();
  const link = new RelayLink({
    urls,
    docName: 'team/doc',
    WebSocket,
    heartbeatIntervalMs: INTERVAL_MS,
    heartbeatTimeoutMs: TIMEOUT_MS,
    backoff: { baseMs: BASE_MS, maxMs: MAX_MS },
    random: () => 0.5,
    ...options,
  });
  links.push(link);
  const opens: [number, string][] = [];
  const errors: CapsyncError[] = [];
  const messages: Message[] = [];
  link.on('open', (n, url, channel) => {
    opens.push([n, url]);
    channel.attach({ message: (bytes) => messages.push(decodeMessage(bytes)), close: () => {}, error: () => {} });
  });
  link.on('error', (e) => errors.push(e));
  const last = () => sockets.at(-1)!;
  return {
    link,
    sockets,
    opens,
    errors,
    messages,
    last,
    async expectNextAttempt(ms, relay) {
      const before = sockets.length;
      if (ms > 0) {
        await vi.advanceTimersByTimeAsync(ms - 1);
        expect(sockets.length, `no attempt before ${ms} ms`).toBe(before);
      }
      await vi.advanceTimersByTimeAsync(ms > 0 ? 1 : 0);
      expect(sockets.length, `an attempt after ${ms} ms`).toBe(before + 1);
      expect(last().relay).toBe(relay);
      expect(link.currentUrl).toBe(relay);
      return last();
    },
  };
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(0);
});

afterEach(() => {
  for (const link of links.splice(0)) link.destroy();
  vi.useRealTimers();
});

describe('RelayLink with a list of relays', () => {
  it('goes round robin through the list, waiting the growing backoff only after a full failed round', async () => {
    const h = harness([A, B, C]);
    h.link.start();
    expect(h.sockets.map((s) => s.url)).toEqual([`${A}/team%2Fdoc`]);
    expect(h.link.currentUrl).toBe(A);

    // Rounds of A, B, C, all unreachable: within a round the next relay comes after the short
    // failover delay; the end of each round waits 0.5 × min(max, base·2^n).
    const backoffs = [50, 100, 200, 400, 500, 500];
    for (const roundEnd of backoffs) {
      h.last().fail(1006);
      await h.expectNextAttempt(FAILOVER_MS, B);
      h.last().fail(1006);
      await h.expectNextAttempt(FAILOVER_MS, C);
      h.last().fail(1006);
      await h.expectNextAttempt(roundEnd, A);
    }
    expect(h.sockets.map((s) => s.relay).slice(0, 7)).toEqual([A, B, C, A, B, C, A]);
    expect(h.opens).toEqual([]);
  });

  it('with one URL behaves as a single relay: every failure waits the backoff', async () => {
    const h = harness([A]);
    h.link.start();
    for (const delay of [50, 100, 200, 400, 500]) {
      h.last().fail(1006);
      await h.expectNextAttempt(delay, A);
    }
  });

  it('moves on after a connect timeout, a heartbeat death, GoingAway, and a close after the relay proved healthy', async () => {
    const h = harness([A, B]);
    h.link.start();

    // Connect timeout: the socket never opens; it is dropped after heartbeatTimeoutMs.
    const hanging = h.last();
    await vi.advanceTimersByTimeAsync(TIMEOUT_MS);
    expect(hanging.closedByClient?.code).toBe(CloseCode.GoingAway);
    expect(h.link.state).toBe('offline');
    await h.expectNextAttempt(FAILOVER_MS, B);

    // B works, then goes half-open: a ping after the interval, dropped after the timeout.
    h.last().accept();
    h.link.healthy();
    expect(h.opens).toEqual([[1, B]]);
    const halfOpen = h.last();
    await vi.advanceTimersByTimeAsync(INTERVAL_MS);
    expect(halfOpen.sent.map((m) => m.type)).toEqual(['hello', 'ping']);
    await vi.advanceTimersByTimeAsync(TIMEOUT_MS);
    expect(halfOpen.closedByClient?.code).toBe(CloseCode.GoingAway);
    // A new round began when B proved healthy: A is tried after the failover delay.
    await h.expectNextAttempt(FAILOVER_MS, A);

    // A works, then shuts down (GoingAway): on to B.
    h.last().accept();
    h.link.healthy();
    h.last().fail(CloseCode.GoingAway, 'shutting-down: relay is shutting down');
    await h.expectNextAttempt(FAILOVER_MS, B);

    // B works, then the TCP connection dies (1006): on to A.
    h.last().accept();
    h.link.healthy();
    h.last().fail(1006);
    await h.expectNextAttempt(FAILOVER_MS, A);
    expect(h.opens).toEqual([
      [1, B],
      [2, A],
      [3, B],
    ]);
    expect(h.errors).toEqual([]);
  });

  it('stays on the relay that works, and does not go back to the first URL once it is on another', async () => {
    const h = harness([A, B]);
    h.link.start();
    h.last().fail(1006);
    const onB = await h.expectNextAttempt(FAILOVER_MS, B);
    onB.accept();
    h.link.healthy();

    // Twenty heartbeat intervals, each ping answered: one socket, still on B (A is not retried).
    for (let i = 0; i < 20; i++) {
      await vi.advanceTimersByTimeAsync(INTERVAL_MS);
      const ping = onB.sent.at(-1)!;
      expect(ping.type).toBe('ping');
      onB.receive({ type: 'pong', id: (ping as { id: number }).id });
    }
    expect(h.sockets).toHaveLength(2);
    expect(h.link.currentUrl).toBe(B);
    expect(h.link.state).toBe('open');

    // A deliberate stop and start returns to the same relay, at once.
    h.link.stop();
    h.link.start();
    expect(h.sockets).toHaveLength(3);
    expect(h.last().relay).toBe(B);
  });

  it('counts a relay that accepts and then drops the connection before it is healthy as failed: no storm', async () => {
    const h = harness([A, B]);
    h.link.start();
    // Both relays accept the WebSocket and close it before answering the sync.
    for (const roundEnd of [50, 100, 200]) {
      h.last().accept();
      h.last().fail(1006);
      await h.expectNextAttempt(FAILOVER_MS, B);
      h.last().accept();
      h.last().fail(CloseCode.Normal);
      await h.expectNextAttempt(roundEnd, A);
    }
  });

  it('a healthy connection starts a new round with the backoff reset', async () => {
    const h = harness([A, B]);
    h.link.start();
    // Three full failed rounds grow the backoff to 0.5 × 400 ms.
    for (const roundEnd of [50, 100, 200]) {
      h.last().fail(1006);
      await h.expectNextAttempt(FAILOVER_MS, B);
      h.last().fail(1006);
      await h.expectNextAttempt(roundEnd, A);
    }
    h.last().accept();
    h.link.healthy();
    h.last().fail(1006);
    await h.expectNextAttempt(FAILOVER_MS, B);
    h.last().fail(1006);
    await h.expectNextAttempt(50, A); // from the base again, not 0.5 × 800 ms
  });

  it('fatal refusals stop the link on the relay in use, with a typed error and no timer left', async () => {
    const cases: [number, string, string, Partial<RelayLinkOptions>][] = [
      [CloseCode.Forbidden, 'forbidden: no access to team/doc', 'forbidden', {}],
      [CloseCode.InvalidDocName, 'invalid-doc-name: bad name', 'invalid-doc-name', {}],
      [CloseCode.Unauthorized, 'unauthorized: bad token', 'unauthorized', { token: 'static-token' }],
      [CloseCode.ProtocolVersion, 'protocol-version: protocol version 0 is not supported', 'protocol-version', {}],
    ];
    for (const [code, reason, errorCode, options] of cases) {
      const h = harness([A, B, C], options);
      h.link.start();
      h.last().fail(1006);
      const onB = await h.expectNextAttempt(FAILOVER_MS, B);
      onB.accept();
      onB.fail(code, reason);
      expect(h.errors.map((e) => e.code), reason).toEqual([errorCode]);
      expect(h.link.state).toBe('offline');
      expect(vi.getTimerCount(), reason).toBe(0);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(h.sockets, reason).toHaveLength(2);
      expect(h.link.currentUrl).toBe(B);
      // start() tries again, on the same relay.
      h.link.start();
      await vi.advanceTimersByTimeAsync(0);
      expect(h.sockets).toHaveLength(3);
      expect(h.last().relay).toBe(B);
      h.link.destroy();
    }
  });

  it('a relay whose hello speaks an incompatible protocol version stops the link: a typed error, 4426 sent, no retry', async () => {
    const h = harness([A, B]);
    h.link.start();
    const onA = h.last();
    onA.accept();
    onA.receive({ type: 'hello', protocolVersion: 99, capabilities: ['ack'] });
    expect(h.errors.map((e) => e.code)).toEqual(['protocol-version']);
    expect(h.errors[0]!.name).toBe('ProtocolVersionError');
    expect(onA.closedByClient?.code).toBe(CloseCode.ProtocolVersion);
    expect(h.messages.filter((m) => m.type === 'hello')).toEqual([]);
    expect(h.link.state).toBe('offline');
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.sockets).toHaveLength(1);
    h.link.destroy();
  });

  it('retryable refusals (unauthorized with a token function) move on, but always with backoff', async () => {
    let tokens = 0;
    const h = harness([A, B], { token: async () => `token-${tokens++}` });
    h.link.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.sockets).toHaveLength(1);
    for (const [delay, relay] of [
      [50, B],
      [100, A],
      [200, B],
    ] as const) {
      h.last().fail(CloseCode.Unauthorized, 'unauthorized: expired');
      await h.expectNextAttempt(delay, relay);
    }
    expect(h.errors.map((e) => e.code)).toEqual(['unauthorized', 'unauthorized', 'unauthorized']);
    expect(h.sockets.map((s) => s.protocols)).toEqual([0, 1, 2, 3].map((i) => ['capsync', `capsync.jwt.token-${i}`]));
  });

  it('a fenced-area refusal (a relay that lacks a fenced value the client holds) is retried on the next relay with backoff', async () => {
    const h = harness([A, B]);
    h.link.start();
    await vi.advanceTimersByTimeAsync(0);
    for (const [delay, relay] of [
      [50, B],
      [100, A],
    ] as const) {
      h.last().accept();
      h.last().fail(CloseCode.FencedArea, 'fenced-area: update touches the fenced area');
      await h.expectNextAttempt(delay, relay);
    }
    expect(h.errors.map((e) => e.code)).toEqual(['fenced-area', 'fenced-area']);
  });

  it('a failing token function is not the relay’s fault: the retry goes to the same relay', async () => {
    let calls = 0;
    const h = harness([A, B], {
      token: () => {
        if (calls++ === 1) throw new Error('token service down');
        return 'token';
      },
    });
    h.link.start();
    await vi.advanceTimersByTimeAsync(0);
    h.last().fail(1006);
    // The attempt on B fails in the token function, before any socket.
    await vi.advanceTimersByTimeAsync(FAILOVER_MS);
    expect(h.sockets).toHaveLength(1);
    expect(h.errors.map((e) => e.code)).toEqual(['unauthorized']);
    expect(h.link.currentUrl).toBe(B);
    // Retried with backoff, still on B.
    await h.expectNextAttempt(50, B);
  });

  it('emits nothing of a socket that is gone: a late message of an old relay never reaches the new connection', async () => {
    const h = harness([A, B]);
    const ack = (seq: number): Message => ({ type: 'ack', seq, stateVector: new Uint8Array([0]) });
    h.link.start();
    const onA = h.last();
    onA.accept();
    onA.receive(ack(1));
    expect(h.messages).toEqual([ack(1)]);

    // A closes by itself (its handlers stay set on the socket object)…
    onA.fail(1006);
    const onB = await h.expectNextAttempt(FAILOVER_MS, B);
    onB.accept();
    h.link.healthy();
    // …and a stray frame of it still comes through: ignored.
    onA.receive(ack(2));
    expect(h.messages).toEqual([ack(1)]);

    // B goes half-open and is dropped by the heartbeat while its acks are held in the network.
    await vi.advanceTimersByTimeAsync(INTERVAL_MS + TIMEOUT_MS);
    const againA = await h.expectNextAttempt(FAILOVER_MS, A);
    againA.accept();
    onB.receive(ack(1));
    onB.fail(1006);
    expect(h.messages).toEqual([ack(1)]);
    expect(h.opens).toEqual([
      [1, A],
      [2, B],
      [3, A],
    ]);
    expect(h.link.state).toBe('open');
    expect(h.link.currentUrl).toBe(A);
    expect(h.sockets).toHaveLength(3);
  });
});

describe('createClient with a list of relays', () => {
  const emptyUpdate = Y.encodeStateAsUpdate(new Y.Doc());
  const emptyVector = Y.encodeStateVector(new Y.Doc());
  const settings = {
    storage: 'memory',
    crossTab: false,
    heartbeatIntervalMs: INTERVAL_MS,
    heartbeatTimeoutMs: TIMEOUT_MS,
    reconnect: { baseMs: BASE_MS, maxMs: MAX_MS },
    // The fake relays speak a socket per document (the multiplexed socket fails over in test/client/failover.test.ts).
    multiplex: false,
  } as const;

  it('validates every URL: a non-empty list of ws:// or wss:// URLs, else a CapsyncError', async () => {
    const { WebSocket } = fakeWebSocket();
    for (const url of [[], '', 'http://relay.test', ['ws://relay.test', 'https://relay.test'], ['ws://'], ['ws://ok.test', ''], 'relay.test']) {
      let thrown: unknown;
      try {
        createClient({ url: url as string[], WebSocket, ...settings });
      } catch (err) {
        thrown = err;
      }
      expect(thrown, JSON.stringify(url)).toMatchObject({ name: 'CapsyncError', code: 'internal' });
    }
    for (const url of [A, [A], [A, B, C]]) await createClient({ url, WebSocket, ...settings }).close();
  });

  it('a document fails over with nothing lost or counted twice: only the new relay’s acks count, sync step 2 carries every edit', async () => {
    const { WebSocket, sockets } = fakeWebSocket();
    const client = createClient({ url: [A, B], WebSocket, ...settings });
    const handle = await client.open('doc');
    const text = handle.doc.getText('t');
    const sent = (s: FakeSocket) => s.sent.filter((m) => m.type === 'update' || m.type === 'sync-step-2');

    // On A: the first sync round, then two edits; A acknowledges only the first.
    const onA = sockets[0]!;
    expect(onA.relay).toBe(A);
    onA.accept();
    onA.receive({ type: 'sync-step-1', stateVector: emptyVector });
    onA.receive({ type: 'sync-step-2', update: emptyUpdate });
    text.insert(0, 'one ');
    await vi.advanceTimersByTimeAsync(0);
    text.insert(text.length, 'two ');
    await vi.advanceTimersByTimeAsync(0);
    // No step 2 on A: the replica held nothing when A asked (see DocSync's stateUpdates).
    expect(sent(onA).map((m) => m.type)).toEqual(['update', 'update']); // seqs 1, 2
    onA.receive({ type: 'ack', seq: 1, stateVector: emptyVector });
    expect(handle.pending).toBe(1);
    expect(handle.status).toBe('syncing');

    // A dies before acknowledging "two"; "three" is typed offline.
    onA.fail(1006);
    expect(handle.status).toBe('offline');
    text.insert(text.length, 'three ');
    expect(handle.pending).toBe(2);

    // On to B (within the base delay, not a full backoff); "four" goes out before B's sync step 1.
    await vi.advanceTimersByTimeAsync(BASE_MS);
    const onB = sockets.at(-1)!;
    expect(sockets).toHaveLength(2);
    expect(onB.relay).toBe(B);
    onB.accept();
    text.insert(text.length, 'four');
    await vi.advanceTimersByTimeAsync(0);
    onB.receive({ type: 'sync-step-1', stateVector: emptyVector });
    const toB = sent(onB);
    expect(toB.map((m) => m.type)).toEqual(['update', 'sync-step-2']); // seqs 1, 2 on this connection
    // B lacked everything (it never heard of A): the sync step 2 holds all four edits.
    const atB = new Y.Doc();
    Y.applyUpdate(atB, (toB[1] as { update: Uint8Array }).update);
    expect(atB.getText('t').toString()).toBe('one two three four');
    expect(handle.pending).toBe(3);

    // A's late ack of its message 2 arrives on A's dead socket: it must not count for B's seqs.
    onA.receive({ type: 'ack', seq: 2, stateVector: emptyVector });
    expect(handle.pending).toBe(3);

    // B acknowledges its own messages: exactly zero pending, never below.
    const counts: number[] = [];
    handle.on('pending', (n) => counts.push(n));
    onB.receive({ type: 'ack', seq: 1, stateVector: emptyVector });
    expect(handle.pending).toBe(2); // "four" (message 1); "two" and "three" rode on message 2
    onB.receive({ type: 'sync-step-2', update: emptyUpdate });
    onB.receive({ type: 'ack', seq: 2, stateVector: emptyVector });
    expect(handle.pending).toBe(0);
    onB.receive({ type: 'ack', seq: 2, stateVector: emptyVector }); // a repeated ack changes nothing
    expect(handle.pending).toBe(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(counts).toEqual([0]);
    expect(handle.status).toBe('synced');
    await client.close();
  });

  it('the lock connection fails over along the same list', async () => {
    const { WebSocket, sockets } = fakeWebSocket();
    const client = createClient({ url: [A, B], WebSocket, ...settings });
    const acquired = client.locks.acquire('stock/1', { ttlMs: 10_000 });
    expect(sockets.map((s) => s.url)).toEqual([`${A}/.capsync%2Flocks`]);
    sockets[0]!.fail(1006);
    await vi.advanceTimersByTimeAsync(BASE_MS);
    const onB = sockets.at(-1)!;
    expect(onB.url).toBe(`${B}/.capsync%2Flocks`);
    onB.accept();
    const request = onB.sent.find((m) => m.type === 'lock-request') as { id: number; key: string } | undefined;
    expect(request?.key).toBe('stock/1');
    onB.receive({ type: 'lock-reply', id: request!.id, code: '', message: '', token: 7, ttlMs: 10_000 });
    const lease = await acquired;
    expect(lease.token).toBe(7);
    await client.close();
  });
});
