import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CapsyncError,
  CloseCode,
  channelPair,
  decodeMessage,
  dialOnce,
  encodeMessage,
  helloFor,
  type Channel,
  type Message,
} from '../src/index.js';

/**
 * dialOnce: one attempt of the Dialer's (credential, connect, hello, handshake timeout) and no
 * retry, over an in-memory pair whose far side the test plays, with fake timers.
 */

const HANDSHAKE_MS = 500;

interface Far {
  url: string;
  protocols: string[];
  channel: Channel;
  received: Message[];
  closed: { code: number; reason: string } | null;
  accept(): void;
}

function once(options: { expectHello?: boolean; credential?: () => Promise<string | undefined> } = {}) {
  const attempts: Far[] = [];
  const dial = dialOnce({
    url: 'ws://authority.test/',
    path: 'team%2Fdoc',
    credential: options.credential ?? (async () => 'relay-token'),
    liveness: { kind: 'none' },
    handshakeTimeoutMs: HANDSHAKE_MS,
    hello: helloFor('fenced-writer'),
    ...(options.expectHello ? { expectHello: (h) => (h.capabilities.includes('locks') ? null : new CapsyncError('unavailable', 'no locks there')) } : {}),
    connect: (url, protocols, opened) => {
      const [near, channel] = channelPair();
      const far: Far = { url, protocols, channel, received: [], closed: null, accept: opened };
      channel.attach({
        message: (bytes) => far.received.push(decodeMessage(bytes)),
        close: (code, reason) => (far.closed = { code, reason }),
        error: () => {},
      });
      attempts.push(far);
      return near;
    },
  });
  // Observed so that a rejection is never unhandled.
  const outcome = dial.link.then(
    (link) => ({ link, err: null }),
    (err: CapsyncError) => ({ link: null, err }),
  );
  return { dial, attempts, outcome };
}

const deliver = () => vi.advanceTimersByTimeAsync(0);

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('dialOnce', () => {
  it('dials the path with the credential, says hello first and hands over the link; frames pass on', async () => {
    const { attempts, outcome } = once();
    await deliver();
    expect(attempts).toHaveLength(1);
    expect(attempts[0]!.url).toBe('ws://authority.test/team%2Fdoc');
    expect(attempts[0]!.protocols).toEqual(['capsync', 'capsync.jwt.relay-token']);
    attempts[0]!.accept();
    const { link } = await outcome;
    expect(link).not.toBeNull();
    await deliver();
    expect(attempts[0]!.received.map((m) => m.type)).toEqual(['hello']);
    const got: Message[] = [];
    let closed: number | null = null;
    link!.channel.attach({ message: (b) => got.push(decodeMessage(b)), close: (code) => (closed = code), error: () => {} });
    attempts[0]!.channel.send(encodeMessage(helloFor('relay', ['locks'])));
    attempts[0]!.channel.send(encodeMessage({ type: 'update', update: new Uint8Array([1]) }));
    await deliver();
    expect(got.map((m) => m.type)).toEqual(['hello', 'update']);
    attempts[0]!.channel.close(CloseCode.Normal, 'bye');
    await deliver();
    expect(closed).toBe(CloseCode.Normal);
    // No retry, ever.
    await vi.advanceTimersByTimeAsync(60_000);
    expect(attempts).toHaveLength(1);
  });

  it('rejects with unavailable when the handshake does not finish in time, and closes the attempt', async () => {
    const { attempts, outcome } = once();
    await deliver();
    await vi.advanceTimersByTimeAsync(HANDSHAKE_MS - 1);
    expect(attempts[0]!.closed).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    const { err } = await outcome;
    expect(err?.code).toBe('unavailable');
    await vi.advanceTimersByTimeAsync(1);
    expect(attempts[0]!.closed?.code).toBe(CloseCode.GoingAway);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(attempts).toHaveLength(1);
  });

  it('rejects with the refusal the close code names, or with the expectHello refusal', async () => {
    const refused = once();
    await deliver();
    refused.attempts[0]!.channel.close(CloseCode.Unauthorized, 'unauthorized: bad token');
    await deliver();
    expect((await refused.outcome).err?.code).toBe('unauthorized');

    const wrong = once({ expectHello: true });
    await deliver();
    wrong.attempts[0]!.accept();
    await deliver();
    wrong.attempts[0]!.channel.send(encodeMessage(helloFor('relay')));
    await deliver();
    const { err } = await wrong.outcome;
    await vi.advanceTimersByTimeAsync(1);
    expect(err?.message).toMatch(/no locks there/);
    expect(wrong.attempts[0]!.closed).not.toBeNull();
  });

  it('cancel gives up an attempt under way (unavailable, its transport closed) or one still asking the credential', async () => {
    const dialling = once();
    await deliver();
    dialling.dial.cancel('deadline passed');
    const { err } = await dialling.outcome;
    expect([err?.code, err?.message]).toEqual(['unavailable', 'deadline passed']);
    await vi.advanceTimersByTimeAsync(1);
    expect(dialling.attempts[0]!.closed?.code).toBe(CloseCode.GoingAway);

    let give!: (t: string) => void;
    const asking = once({ credential: () => new Promise((res) => (give = res)) });
    asking.dial.cancel('deadline passed');
    expect((await asking.outcome).err?.code).toBe('unavailable');
    give('late-token');
    await deliver();
    expect(asking.attempts).toHaveLength(0);
  });
});
