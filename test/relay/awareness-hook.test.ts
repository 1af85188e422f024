/**
 * The backend's onAwareness hook (issue 14): it may drop or rewrite a client's presence before
 * the relay applies and broadcasts it; it is synchronous and fails closed, so a hook that throws,
 * answers with a promise or answers garbage costs a count and drops the state, at once.
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

it('fails closed: a rewrite the relay cannot use (over twice --max-awareness-state-bytes, not an object, not JSON) drops the state, counted as an error', async () => {
  const answers: unknown[] = [{ pad: 'x'.repeat(2_100) }, 'a string', { n: 1n }, undefined];
  const { relay, setState, seenAtB, allSeenAtB } = await setup({ onAwareness: () => answers.shift() as never });
  for (let n = 1; n <= 4; n++) setState({ name: 'ann', n });
  // The fourth passes; none of the first three was applied or sent.
  expect(await seenAtB((s) => s['n'] === 4, 'state 4 at b')).toEqual({ name: 'ann', n: 4 });
  expect(allSeenAtB().filter((m) => /"n\\?":[123]\b/.test(m))).toEqual([]);
  expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'error' })).toBe(3);
});

it('a rewrite up to twice the client limit is taken (a state padded to the limit cannot make the hook fail open)', async () => {
  const { setState, seenAtB } = await setup({ onAwareness: ({ state }) => ({ ...(state as object), verifiedName: 'Ann Example' }) });
  setState({ name: 'CEO', pad: 'x'.repeat(960) }); // at the 1,000-byte limit: the rewrite goes over it
  const seen = await seenAtB((s) => s['verifiedName'] === 'Ann Example', 'the rewrite at b');
  expect(seen['name']).toBe('CEO');
});

it('a hook that throws drops the state, counted as an error (a client cannot get past it by making it throw)', async () => {
  const { relay, setState, seenAtB, allSeenAtB } = await setup({
    onAwareness: ({ state }) => {
      if ((state as { cursor?: unknown }).cursor === null) throw new TypeError('cannot read the cursor');
      return undefined;
    },
  });
  setState({ name: 'ann', cursor: null, html: '<img onerror=alert(1)>' });
  setState({ name: 'ann', cursor: 3 });
  expect(await seenAtB((s) => s['cursor'] === 3, 'the good state at b')).toEqual({ name: 'ann', cursor: 3 });
  expect(allSeenAtB().some((m) => m.includes('onerror'))).toBe(false);
  expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'error' })).toBe(1);
});

it('a slow (async) hook is not waited for: the state is dropped at once, counted as a timeout, and the document goes on', async () => {
  let calls = 0;
  const { relay, a, b, setState, allSeenAtB } = await setup({
    onAwareness: () => {
      calls++;
      return new Promise<undefined>(() => {}) as never;
    },
  });
  setState({ name: 'ann', n: 1 });
  setState({ name: 'ann', n: 2 });
  // Edits of the document are served as ever, and nothing of a's presence reached b.
  await a.waitForAck(a.type('still;'));
  await b.waitForText('still;');
  expect(calls).toBe(2);
  expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onAwareness', outcome: 'timeout' })).toBe(2);
  expect(allSeenAtB().some((m) => m.includes('ann'))).toBe(false);
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
