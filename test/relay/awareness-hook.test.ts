/**
 * The backend's onAwareness hook (issue 14): it may drop or rewrite a client's presence before
 * the relay applies and broadcasts it; it is synchronous, so a hook that throws, answers with a
 * promise or answers garbage costs a count and lets the state pass unchanged, at once.
 */
import { afterEach, expect, it } from 'vitest';
import { Awareness, encodeAwarenessUpdate } from 'y-protocols/awareness';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RelayHooks, RelayOptions } from '@capsync/server';
import { awarenessStatesSeen, ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { metricValue, waitForMetric } from '../support/relay-observe.js';

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
const awarenesses: Awareness[] = [];
afterEach(async () => {
  awarenesses.splice(0).forEach((a) => a.destroy());
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
});

/** A relay with `hooks`, a writer `a` (setState sends its presence) and a watcher `b`. */
async function setup(hooks: RelayHooks, options: RelayOptions = {}) {
  const relay = await startRelay({ hooks, hookTimeoutMs: 60_000, maxAwarenessStateBytes: 1_000, ...options });
  relays.push(relay);
  const a = await ProtocolClient.synced(relay.docUrl('room'));
  const b = await ProtocolClient.synced(relay.docUrl('room'));
  clients.push(a, b);
  const aw = new Awareness(a.doc);
  awarenesses.push(aw);
  const setState = (state: Record<string, unknown>) => {
    aw.setLocalState(state);
    a.sendMessage({ type: 'awareness', update: encodeAwarenessUpdate(aw, [a.doc.clientID]) });
  };
  /** Waits until `b` sees a's presence pass `test`, and returns it. */
  const seenAtB = (test: (s: Record<string, unknown>) => boolean, what: string) =>
    b.waitFor(() => {
      const s = awarenessStatesSeen(b).get(a.doc.clientID);
      return s !== undefined && test(s) ? s : undefined;
    }, what);
  /** Every state of a's b received, in order. */
  const allSeenAtB = () => b.received.filter((m) => m.type === 'awareness').map((m) => JSON.stringify(m));
  return { relay, a, b, setState, seenAtB, allSeenAtB };
}

it('drops what the hook drops: not applied, not broadcast, not given to a newcomer', async () => {
  const { relay, a, setState, seenAtB, allSeenAtB } = await setup({ onAwareness: ({ state }) => ((state as { hidden?: boolean }).hidden ? false : undefined) });
  setState({ name: 'ann', hidden: true, n: 1 });
  setState({ name: 'ann', n: 2 });
  expect(await seenAtB((s) => s['n'] === 2, 'the second state at b')).toEqual({ name: 'ann', n: 2 });
  expect(allSeenAtB().some((m) => m.includes('hidden'))).toBe(false);
  // A newcomer asks for everything: the dropped state is nowhere.
  setState({ name: 'ann', hidden: true, n: 3 });
  await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'ok' }, 3);
  const c = await ProtocolClient.synced(relay.docUrl('room'));
  clients.push(c);
  c.sendMessage({ type: 'query-awareness' });
  const atC = await c.waitFor(() => awarenessStatesSeen(c).get(a.doc.clientID), 'presence at c');
  expect(atC).toEqual({ name: 'ann', n: 2 });
});

it('applies and broadcasts a rewrite in place of the state, under the same client id', async () => {
  const seen: unknown[] = [];
  const { relay, a, setState, seenAtB, allSeenAtB } = await setup({
    onAwareness: ({ state, clientID, identity }) => {
      seen.push({ clientID, identity });
      const { email: _email, ...rest } = state as Record<string, unknown>;
      return { ...rest, checked: true };
    },
  });
  setState({ name: 'ann', email: 'ann@example.com' });
  expect(await seenAtB((s) => s['checked'] === true, 'the rewrite at b')).toEqual({ name: 'ann', checked: true });
  expect(allSeenAtB().some((m) => m.includes('example.com'))).toBe(false);
  expect(seen).toEqual([{ clientID: a.doc.clientID, identity: undefined }]);
  expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'ok' })).toBe(1);
});

it('a rewrite the relay would refuse from a client (over --max-awareness-state-bytes, not an object, not JSON) lets the original pass, counted as an error', async () => {
  const answers: unknown[] = [{ pad: 'x'.repeat(2_000) }, 'a string', { n: 1n }];
  const { relay, setState, seenAtB } = await setup({ onAwareness: () => answers.shift() as never });
  for (let n = 1; n <= 3; n++) {
    setState({ name: 'ann', n });
    expect(await seenAtB((s) => s['n'] === n, `state ${n} unchanged at b`)).toEqual({ name: 'ann', n });
  }
  expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'error' })).toBe(3);
});

it('a hook that throws lets the state pass unchanged, counted as an error', async () => {
  const { relay, setState, seenAtB } = await setup({
    onAwareness: () => {
      throw new Error('backend bug');
    },
  });
  setState({ name: 'ann' });
  expect(await seenAtB((s) => s['name'] === 'ann', 'the state at b')).toEqual({ name: 'ann' });
  expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'error' })).toBe(1);
});

it('a slow (async) hook is not waited for: the state passes unchanged at once, counted as a timeout, and the document goes on', async () => {
  let calls = 0;
  const { relay, a, b, setState, seenAtB } = await setup({
    // Would drop everything, a minute from now (hookTimeoutMs is a minute here): never waited for.
    onAwareness: () => {
      calls++;
      return new Promise<false>(() => {}) as never;
    },
  });
  setState({ name: 'ann', n: 1 });
  setState({ name: 'ann', n: 2 });
  expect(await seenAtB((s) => s['n'] === 2, 'the second state at b')).toEqual({ name: 'ann', n: 2 });
  expect(calls).toBe(2);
  expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'timeout' })).toBe(2);
  // Edits of the document are served as ever.
  await a.waitForAck(a.type('still;'));
  await b.waitForText('still;');
});

it('regression: with --webhook on (its hooks composed with the app\'s, all async), onAwareness is still called synchronously and applied', async () => {
  const endpoint = http.createServer((req, res) => req.resume().on('end', () => res.end()));
  await new Promise<void>((r) => endpoint.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/hooks`;
    const { relay, setState, seenAtB } = await setup(
      { onAwareness: ({ state }) => ({ ...(state as object), checked: true }) },
      { webhooks: { endpoints: [url], secret: 'webhook-secret-0123456789abcdef' } },
    );
    setState({ name: 'ann' });
    expect(await seenAtB((s) => s['checked'] === true, 'the rewrite at b')).toEqual({ name: 'ann', checked: true });
    expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'ok' })).toBe(1);
    await relay.dispose();
    relays.splice(relays.indexOf(relay), 1);
  } finally {
    endpoint.closeAllConnections();
    await new Promise((r) => endpoint.close(r));
  }
});
