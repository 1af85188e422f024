import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { TOKEN_REFRESH_CAPABILITY, channelPair, decodeMessage, dialOnce, encodeMessage, helloFor, type Channel, type Message } from '../src/index.js';

/**
 * A dialled link refreshes its token function's JWT before it expires, on the link, only when
 * the other side's hello says it takes it (an older relay: nothing is sent, it closes at expiry).
 * The far side is played by the test over an in-memory pair, with fake timers (and clock).
 */

function jwt(expS: number, n: number): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'HS256' })}.${part({ sub: 'alice', exp: expS, n })}.sig`;
}

async function dialWith(relayCapabilities: string[]) {
  let minted = 0;
  let far!: { channel: Channel; received: Message[] };
  const dial = dialOnce({
    url: 'ws://relay.test/',
    path: 'doc',
    credential: async () => jwt(Math.floor(Date.now() / 1000) + 60, ++minted),
    refreshCredential: true,
    liveness: { kind: 'none' },
    handshakeTimeoutMs: 500,
    hello: helloFor('client'),
    connect: (_url, _protocols, opened) => {
      const [near, channel] = channelPair();
      far = { channel, received: [] };
      channel.attach({ message: (bytes) => far.received.push(decodeMessage(bytes)), close: () => {}, error: () => {} });
      setTimeout(opened, 0);
      return near;
    },
  });
  await vi.advanceTimersByTimeAsync(0);
  const link = await dial.link;
  link.channel.attach({ message: () => {}, close: () => {}, error: () => {} });
  far.channel.send(encodeMessage({ type: 'hello', protocolVersion: 1, capabilities: relayCapabilities }));
  await vi.advanceTimersByTimeAsync(0);
  return { far, minted: () => minted, close: () => dial.cancel('done') };
}

const refreshes = (received: Message[]) => received.filter((m) => m.type === 'token-refresh');

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date('2026-12-07T12:00:00Z'));
});
afterEach(() => vi.useRealTimers());

it('sends a fresh token on the link 30 s before a 60 s token expires, and again for the next one', async () => {
  const { far, minted, close } = await dialWith(helloFor('relay').capabilities);
  expect(helloFor('relay').capabilities).toContain(TOKEN_REFRESH_CAPABILITY);
  await vi.advanceTimersByTimeAsync(29_000);
  expect(refreshes(far.received)).toHaveLength(0);
  await vi.advanceTimersByTimeAsync(1_500);
  expect(refreshes(far.received)).toHaveLength(1);
  expect(minted()).toBe(2);
  await vi.advanceTimersByTimeAsync(31_000);
  expect(refreshes(far.received)).toHaveLength(2);
  close();
});

it('never sends one to a relay whose hello does not take it (an older relay)', async () => {
  const { far, minted, close } = await dialWith(['ack', 'error', 'ping']);
  await vi.advanceTimersByTimeAsync(120_000);
  expect(refreshes(far.received)).toHaveLength(0);
  expect(minted()).toBe(1);
  close();
});
