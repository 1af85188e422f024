import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CloseCode,
  Dialer,
  CapsyncError,
  MUX_CONTROL_FRAMING,
  channelPair,
  decodeMuxFrame,
  encodeMuxFrame,
  decodeMessage,
  encodeMessage,
  helloFor,
  type CapsyncError as CapsyncErrorType,
  type Channel,
  type ChannelPairControl,
  type DialedLink,
  type DialerOptions,
  type Message,
  type NetworkStatus,
} from '../src/index.js';

/**
 * The Dialer over in-memory channel pairs and fake timers: each attempt is one pair whose far
 * side the test plays (accept, refuse, answer, go silent), and every delay is checked to the
 * millisecond. The WebSocket path runs in the client's tests (packages/client, test/client).
 */

const A = 'ws://relay-a.test';
const B = 'ws://relay-b.test/';
const C = 'ws://relay-c.test';
const BASE_MS = 100;
const MAX_MS = 1_000;
const HANDSHAKE_MS = 500;
/** With random() = 0.5: the failover delay within a round; backoff bounds are halved. */
const FAILOVER_MS = 50;

/** The far side of one attempt. */
interface Far {
  url: string;
  protocols: string[];
  channel: Channel;
  control: ChannelPairControl;
  received: Message[];
  closed: { code: number; reason: string } | null;
  /** Unanswered transport pings (liveness 'transport-ping'). */
  pings: (() => void)[];
  accept(): void;
  send(msg: Message): void;
}

interface Harness {
  dialer: Dialer;
  attempts: Far[];
  links: DialedLink[];
  /** What each link's channel delivered, decoded. */
  delivered: Message[][];
  closes: { code: number; reason: string; opened: boolean }[];
  errors: CapsyncErrorType[];
  last(): Far;
  /** Asserts the next attempt starts exactly `ms` from now (not a millisecond earlier), to `url`. */
  expectNextAttempt(ms: number, url: string): Promise<Far>;
}

const dialers: Dialer[] = [];

function harness(options: Partial<DialerOptions> = {}): Harness {
  const attempts: Far[] = [];
  const dialer = new Dialer({
    urls: [A, B, C],
    path: 'team%2Fdoc',
    backoff: { baseMs: BASE_MS, maxMs: MAX_MS },
    random: () => 0.5,
    liveness: { kind: 'none' },
    handshakeTimeoutMs: HANDSHAKE_MS,
    hello: helloFor('client'),
    retryUnauthorized: false,
    connect: (url, protocols, opened) => {
      const [near, channel, control] = channelPair();
      const far: Far = { url, protocols, channel, control, received: [], closed: null, pings: [], accept: opened, send: (m) => channel.send(encodeMessage(m)) };
      channel.attach({
        message: (bytes) => far.received.push(decodeMessage(bytes)),
        close: (code, reason) => (far.closed = { code, reason }),
        error: () => {},
      });
      attempts.push(far);
      return Object.assign(near, { ping: (pong: () => void) => far.pings.push(pong) });
    },
    ...options,
  });
  dialers.push(dialer);
  const h: Harness = {
    dialer,
    attempts,
    links: [],
    delivered: [],
    closes: [],
    errors: [],
    last: () => attempts.at(-1)!,
    async expectNextAttempt(ms, url) {
      const before = attempts.length;
      if (ms > 0) {
        await vi.advanceTimersByTimeAsync(ms - 1);
        expect(attempts.length, `no attempt before ${ms} ms`).toBe(before);
      }
      await vi.advanceTimersByTimeAsync(ms > 0 ? 1 : 0);
      expect(attempts.length, `an attempt after ${ms} ms`).toBe(before + 1);
      expect(h.last().url.startsWith(url.replace(/\/$/, ''))).toBe(true);
      expect(dialer.currentUrl).toBe(url);
      return h.last();
    },
  };
  dialer.on('open', (link) => {
    const got: Message[] = [];
    h.links.push(link);
    h.delivered.push(got);
    link.channel.attach({ message: (bytes) => got.push(decodeMessage(bytes)), close: () => {}, error: () => {} });
  });
  dialer.on('close', ({ code, reason, opened }) => h.closes.push({ code, reason, opened }));
  dialer.on('error', (err) => h.errors.push(err));
  return h;
}

/** Lets the pairs deliver what the test sent (a macrotask at the current fake time). */
const deliver = () => vi.advanceTimersByTimeAsync(0);
/**
 * Lets the pairs deliver what the dialer sent from a timer or a delivery: fake timers move a
 * macrotask scheduled while timers run 1 ms later.
 */
const settle = () => vi.advanceTimersByTimeAsync(1);
const update = (n: number): Message => ({ type: 'update', update: new Uint8Array([n]) });

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  for (const d of dialers.splice(0)) d.destroy();
  vi.useRealTimers();
});

describe('Dialer: one link', () => {
  it('dials urls[0] + path offering the credential, says hello first, then hands over a channel that carries frames both ways', async () => {
    const tokens: string[] = [];
    const h = harness({ credential: async () => `token-${tokens.push('t')}` });
    const states: string[] = [];
    h.dialer.on('state', (s) => states.push(s));
    h.dialer.start();
    await deliver();
    expect(h.attempts.map((f) => [f.url, f.protocols])).toEqual([[`${A}/team%2Fdoc`, ['capsync', 'capsync.jwt.token-1']]]);
    expect(h.dialer.state).toBe('connecting');

    h.last().accept();
    expect(h.dialer.state).toBe('open');
    expect(h.links.map((l) => [l.connection, l.url, l.hello])).toEqual([[1, A, null]]);
    h.links[0]!.channel.send(encodeMessage(update(1)));
    h.last().send(update(2));
    await deliver();
    expect(h.last().received.map((m) => m.type)).toEqual(['hello', 'update']);
    expect(h.delivered[0]).toEqual([update(2)]);
    expect(h.links[0]!.channel.writable).toBe(true);
    expect(states).toEqual(['connecting', 'open']);
  });

  it('an attempt that does not open within the handshake timeout is closed with 1001 and counts as unreachable', async () => {
    const h = harness();
    h.dialer.start();
    const hanging = h.last();
    await vi.advanceTimersByTimeAsync(HANDSHAKE_MS);
    expect(h.closes).toEqual([{ code: CloseCode.GoingAway, reason: 'unavailable: no answer within the handshake timeout', opened: false }]);
    await h.expectNextAttempt(FAILOVER_MS, B);
    expect(hanging.closed?.code).toBe(CloseCode.GoingAway);
    expect(h.errors).toEqual([]);
  });

  it('nothing of a link that is gone reaches the next; link.channel.close(code) ends it as if the other side had', async () => {
    const h = harness();
    h.dialer.start();
    const onA = h.last();
    onA.accept();
    const first = h.links[0]!;
    onA.control.hold(); // a frame of A still in the network when it is declared gone
    onA.send(update(1));
    // The owner ends the link over an undecodable frame: reported like the relay's 4400.
    first.channel.close(CloseCode.BadMessage, 'bad-message: undecodable frame');
    expect(h.closes.at(-1)).toMatchObject({ code: CloseCode.BadMessage, opened: true });
    expect(h.errors.map((e) => e.code)).toEqual(['bad-message']);
    expect(first.channel.writable).toBe(false);
    first.channel.send(encodeMessage(update(9))); // dropped, no throw
    onA.control.release();
    const onB = await h.expectNextAttempt(BASE_MS / 2, B);
    onB.accept();
    await deliver();
    expect(h.delivered).toEqual([[], []]);
    expect(onA.closed?.code).toBe(CloseCode.BadMessage);
    expect(h.links.map((l) => l.connection)).toEqual([1, 2]);
  });
  it("a 'close' listener may restart the dialer: its attempt stands, with no second one scheduled", async () => {
    const h = harness();
    h.dialer.start();
    h.last().accept();
    h.dialer.once('close', () => h.dialer.start());
    h.last().control.sever();
    await deliver();
    expect(h.attempts).toHaveLength(2);
    expect(h.dialer.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(HANDSHAKE_MS - 1);
    expect(h.attempts).toHaveLength(2);
  });
});

describe('Dialer: failover and backoff', () => {
  it('goes round robin, waiting the growing backoff only after a full failed round; healthy() starts a new round', async () => {
    const h = harness();
    h.dialer.start();
    for (const roundEnd of [50, 100, 200, 400]) {
      h.last().control.sever();
      await h.expectNextAttempt(FAILOVER_MS, B);
      h.last().control.sever();
      await h.expectNextAttempt(FAILOVER_MS, C);
      h.last().control.sever();
      await h.expectNextAttempt(roundEnd, A);
    }
    h.last().accept();
    h.dialer.healthy();
    h.last().control.sever();
    await h.expectNextAttempt(FAILOVER_MS, B);
    h.last().control.sever();
    await h.expectNextAttempt(FAILOVER_MS, C);
    h.last().control.sever();
    await h.expectNextAttempt(50, A); // from the base again
    expect(h.closes.every((c) => c.code === 1006)).toBe(true);
  });

  it('stays on the URL that works: stop() and start() dial it again, at once', async () => {
    const h = harness();
    h.dialer.start();
    h.last().control.sever();
    (await h.expectNextAttempt(FAILOVER_MS, B)).accept();
    h.dialer.stop();
    expect(h.closes.at(-1)).toMatchObject({ code: CloseCode.Normal, reason: 'disconnected' });
    await deliver();
    expect(vi.getTimerCount()).toBe(0);
    h.dialer.start();
    expect(h.attempts).toHaveLength(3);
    expect(h.last().url).toBe(`${B.replace(/\/$/, '')}/team%2Fdoc`);
  });

  it('a failing credential function is not the relay’s fault: an unauthorized error, the same URL after the backoff', async () => {
    let calls = 0;
    const h = harness({
      credential: () => {
        if (calls++ === 1) throw new Error('token service down');
        return 'token';
      },
    });
    h.dialer.start();
    h.last().control.sever();
    await vi.advanceTimersByTimeAsync(FAILOVER_MS);
    expect(h.attempts).toHaveLength(1);
    expect(h.errors.map((e) => [e.code, e.message])).toEqual([['unauthorized', 'the credential function failed: token service down']]);
    await h.expectNextAttempt(50, B);
  });

  it('a connect that throws (a malformed URL) is an unavailable error, and the next URL is dialled', async () => {
    let first = true;
    const h = harness();
    const connect = (h.dialer as unknown as { options: DialerOptions }).options.connect;
    (h.dialer as unknown as { options: DialerOptions }).options.connect = (url, protocols, opened) => {
      if (first) {
        first = false;
        throw new SyntaxError('bad URL');
      }
      return connect(url, protocols, opened);
    };
    h.dialer.start();
    expect(h.errors.map((e) => e.code)).toEqual(['unavailable']);
    await h.expectNextAttempt(FAILOVER_MS, B);
  });
});

describe('Dialer: refusals', () => {
  it('fatal refusals stop the dialer with a typed error and no timer left; start() dials the same URL again', async () => {
    const cases: [number, string, string, Partial<DialerOptions>][] = [
      [CloseCode.Forbidden, 'forbidden: no access', 'forbidden', {}],
      [CloseCode.InvalidDocName, 'invalid-doc-name: bad name', 'invalid-doc-name', {}],
      [CloseCode.Unauthorized, 'unauthorized: bad token', 'unauthorized', { retryUnauthorized: false }],
      [CloseCode.ProtocolVersion, 'protocol-version: version 0', 'protocol-version', {}],
    ];
    for (const [code, reason, errorCode, options] of cases) {
      const h = harness(options);
      h.dialer.start();
      h.last().accept();
      h.last().channel.close(code, reason);
      await deliver();
      expect(h.errors.map((e) => e.code), reason).toEqual([errorCode]);
      expect(h.dialer.state).toBe('offline');
      expect(vi.getTimerCount(), reason).toBe(0);
      h.dialer.start();
      expect(h.attempts.map((f) => f.url)).toEqual([`${A}/team%2Fdoc`, `${A}/team%2Fdoc`]);
      h.dialer.destroy();
    }
  });

  it('retryable refusals move on with the backoff: not-owner, fenced-area, unauthorized with retryUnauthorized; 4429 waits minDelayAfter', async () => {
    const h = harness({ urls: [A, B], retryUnauthorized: true, minDelayAfter: { [CloseCode.SlowConsumer]: 1_000 } });
    h.dialer.start();
    const refusals: [number, string, number, string][] = [
      [CloseCode.Forbidden, 'not-owner: someone else’s client id', 50, B],
      [CloseCode.FencedArea, 'fenced-area: update touches the fenced area', 100, A],
      [CloseCode.Unauthorized, 'unauthorized: expired', 200, B],
      [CloseCode.SlowConsumer, 'slow-consumer: send buffer full', 1_000, A],
    ];
    for (const [code, reason, delay, url] of refusals) {
      h.last().accept();
      h.last().channel.close(code, reason);
      await deliver();
      await h.expectNextAttempt(delay, url);
    }
    expect(h.errors.map((e) => e.code)).toEqual(['not-owner', 'fenced-area', 'unauthorized', 'slow-consumer']);
  });

  it("refusalAction overrides the policy: 'handled' is not reported, 'retry-slowly' waits at the backoff's cap", async () => {
    const h = harness({
      urls: [A],
      refusalAction: (code) => (code === CloseCode.LimitExceeded ? 'handled' : code === CloseCode.ProtocolVersion ? 'retry-slowly' : undefined),
    });
    h.dialer.start();
    h.last().accept();
    h.last().channel.close(CloseCode.LimitExceeded, 'limit-exceeded: --max-awareness-state-bytes');
    await deliver();
    await h.expectNextAttempt(50, A);
    expect(h.errors).toEqual([]);
    h.last().accept();
    h.last().channel.close(CloseCode.ProtocolVersion, 'protocol-version: version 9');
    await deliver();
    await h.expectNextAttempt(MAX_MS / 2, A);
    expect(h.errors.map((e) => e.name)).toEqual(['ProtocolVersionError']);
  });
});

describe('Dialer: hello', () => {
  it('a hello of a protocol version not spoken here closes the link with 4426 and stops; a good one passes on', async () => {
    const h = harness();
    h.dialer.start();
    h.last().accept();
    h.last().send({ type: 'hello', protocolVersion: 1, capabilities: ['ack'] });
    await deliver();
    expect(h.delivered[0]).toEqual([{ type: 'hello', protocolVersion: 1, capabilities: ['ack'] }]);
    h.last().send({ type: 'hello', protocolVersion: 99, capabilities: ['ack'] });
    await deliver();
    await settle();
    expect(h.last().closed?.code).toBe(CloseCode.ProtocolVersion);
    expect(h.errors.map((e) => e.name)).toEqual(['ProtocolVersionError']);
    expect(h.delivered[0]).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('with expectHello the link opens on the hello (in the event, not on the channel); frames before it wait for the owner', async () => {
    const h = harness({ expectHello: (hello) => (hello.capabilities.includes('locks') ? null : new CapsyncError('unavailable', 'not a lock endpoint')) });
    h.dialer.start();
    h.last().accept();
    expect(h.dialer.state).toBe('connecting');
    expect(h.links).toEqual([]);
    h.last().send(update(1)); // a frame that overtakes nothing: it is held for the owner
    h.last().send({ type: 'hello', protocolVersion: 1, capabilities: ['locks'] });
    await deliver();
    expect(h.links.map((l) => l.hello?.capabilities)).toEqual([['locks']]);
    expect(h.delivered[0]).toEqual([update(1)]);
    expect(h.dialer.state).toBe('open');

    // A hello without the capability: refused, reported, retried.
    h.last().control.sever();
    const onB = await h.expectNextAttempt(FAILOVER_MS, B);
    onB.accept();
    onB.send({ type: 'hello', protocolVersion: 1, capabilities: ['ack'] });
    await deliver();
    expect(h.errors.map((e) => e.message)).toEqual(['not a lock endpoint']);
    await h.expectNextAttempt(50, C);
    expect(onB.closed?.reason).toBe('unavailable: not a lock endpoint');

    // No hello at all: the handshake timeout covers it.
    h.last().accept();
    await vi.advanceTimersByTimeAsync(HANDSHAKE_MS);
    expect(h.closes.at(-1)).toMatchObject({ code: CloseCode.GoingAway, opened: false });
  });
});

describe('Dialer: liveness', () => {
  it('app-ping: a ping after an interval of silence, its pong swallowed, any frame counts as life; silence after a ping closes with 1001', async () => {
    const h = harness({ liveness: { kind: 'app-ping', intervalMs: 1_000, timeoutMs: 300 } });
    h.dialer.start();
    const far = h.last();
    far.accept();
    await vi.advanceTimersByTimeAsync(600);
    far.send(update(1)); // life: the ping moves to 1 s after it
    await vi.advanceTimersByTimeAsync(999);
    expect(far.received.map((m) => m.type)).toEqual(['hello']);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    const ping = far.received.at(-1) as { type: string; id: number };
    expect(ping.type).toBe('ping');
    far.send({ type: 'pong', id: ping.id });
    await vi.advanceTimersByTimeAsync(1_000 + 299);
    expect(h.delivered[0]).toEqual([update(1)]); // the pong was the dialer's
    expect(h.dialer.state).toBe('open');
    // This second ping goes unanswered: 300 ms later the link is dead.
    expect(far.received.filter((m) => m.type === 'ping')).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(300);
    expect(h.closes).toEqual([{ code: CloseCode.GoingAway, reason: 'unavailable: no answer within the heartbeat timeout', opened: true }]);
    await settle();
    expect(far.closed?.code).toBe(CloseCode.GoingAway);
  });

  it('transport-ping: probes with the transport, and terminates a link whose probe goes unanswered', async () => {
    const h = harness({ liveness: { kind: 'transport-ping', intervalMs: 1_000 } });
    h.dialer.start();
    const far = h.last();
    far.accept();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(far.pings).toHaveLength(1);
    far.pings.shift()!();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(far.pings).toHaveLength(1);
    expect(far.received.map((m) => m.type)).toEqual(['hello']); // no app pings
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.closes.at(-1)).toMatchObject({ code: 1006, opened: true });
    await settle();
    expect(far.closed?.code).toBe(1006);
  });
});

describe('Dialer: the network', () => {
  function fakeNetwork(offline: boolean): NetworkStatus & { set(offline: boolean): void } {
    let on: (() => void) | null = null;
    let off: (() => void) | null = null;
    return {
      offline,
      watch(online, offlineFn) {
        on = online;
        off = offlineFn;
        return () => (on = off = null);
      },
      set(value) {
        (value ? off : on)?.();
      },
    };
  }

  it('offline: nothing is dialled; back online the current URL is dialled at once; going offline drops the link with no retry', async () => {
    const network = fakeNetwork(true);
    const h = harness({ network });
    h.dialer.start();
    expect(h.attempts).toEqual([]);
    network.set(false);
    expect(h.attempts).toHaveLength(1);
    h.last().accept();
    network.set(true);
    expect(h.closes).toEqual([{ code: CloseCode.GoingAway, reason: 'unavailable: the network went offline', opened: true }]);
    expect(vi.getTimerCount()).toBeLessThanOrEqual(1); // the pair's close delivery, no retry
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.attempts).toHaveLength(1);
    network.set(false);
    expect(h.attempts.map((f) => f.url)).toEqual([`${A}/team%2Fdoc`, `${A}/team%2Fdoc`]);
  });

  it('regression: the network coming back does not dial a dialer that was never started (RelayLink did)', () => {
    const network = fakeNetwork(false);
    const h = harness({ network });
    network.set(true);
    network.set(false);
    expect(h.attempts).toEqual([]);
    expect(h.dialer.state).toBe('offline');
  });

  it('destroy closes the link, reports it, and leaves no timer', async () => {
    const h = harness({ liveness: { kind: 'app-ping', intervalMs: 1_000, timeoutMs: 300 } });
    h.dialer.start();
    h.last().accept();
    h.dialer.destroy();
    expect(h.closes).toEqual([{ code: CloseCode.Normal, reason: 'closed', opened: true }]);
    await deliver();
    expect(vi.getTimerCount()).toBe(0);
    h.dialer.start();
    expect(h.attempts).toHaveLength(1);
  });
});

describe('Dialer: control framing (a multiplexed socket)', () => {
  it("its own messages travel on the control session: hello and pings out, the awaited hello and pongs in; other sessions' frames pass on untouched", async () => {
    const raw: Uint8Array[] = [];
    let far!: Channel;
    let open!: () => void;
    // Not the harness: its owner decodes every frame as a plain message.
    const dialer = new Dialer({
      urls: [A],
      path: '.capsync/mux',
      backoff: { baseMs: BASE_MS, maxMs: MAX_MS },
      handshakeTimeoutMs: HANDSHAKE_MS,
      hello: helloFor('client'),
      retryUnauthorized: false,
      control: MUX_CONTROL_FRAMING,
      liveness: { kind: 'app-ping', intervalMs: 1_000, timeoutMs: 300 },
      expectHello: () => null,
      connect: (_url, _protocols, opened) => {
        const [near, channel] = channelPair();
        far = channel;
        open = opened;
        channel.attach({ message: (bytes) => raw.push(bytes), close: () => {}, error: () => {} });
        return near;
      },
    });
    dialers.push(dialer);
    const h = { dialer };
    const links: Uint8Array[] = [];
    h.dialer.on('open', (link) => link.channel.attach({ message: (bytes) => links.push(bytes), close: () => {}, error: () => {} }));
    h.dialer.start();
    open();
    await deliver();
    expect(decodeMuxFrame(raw[0]!).sid).toBe(0);
    expect(decodeMessage(decodeMuxFrame(raw[0]!).body).type).toBe('hello');
    // A session's frame before the hello waits; the framed hello opens the link.
    far.send(encodeMuxFrame(3, encodeMessage(update(1))));
    far.send(encodeMuxFrame(0, encodeMessage(helloFor('relay'))));
    await deliver();
    expect(h.dialer.state).toBe('open');
    await vi.advanceTimersByTimeAsync(1_000);
    await settle();
    const ping = decodeMessage(decodeMuxFrame(raw.at(-1)!).body) as { type: string; id: number };
    expect([decodeMuxFrame(raw.at(-1)!).sid, ping.type]).toEqual([0, 'ping']);
    far.send(encodeMuxFrame(0, encodeMessage({ type: 'pong', id: ping.id })));
    await deliver();
    expect(links).toEqual([encodeMuxFrame(3, encodeMessage(update(1)))]);
    await vi.advanceTimersByTimeAsync(1_299);
    expect(h.dialer.state).toBe('open');
  });
});
