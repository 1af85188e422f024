/**
 * The backend's hooks (issue 14): onConnect / onDisconnect, onLoadDocument seeding a new
 * document, onChange debounced with the merged update, onStoreDocument after the commit; and a
 * hook that throws or never finishes costs nothing but a log line and a count.
 */
import { afterEach, expect, it } from 'vitest';
import * as Y from 'yjs';
import type { RelayHooks } from '@capsync/server';
import { connectAs } from '../support/client-ids.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { metricValue, waitForMetric } from '../support/relay-observe.js';
import { withTimeout } from '../support/wait.js';

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
});

/** Resolves with the first value `push` is given that passes `test`. */
function awaiting<T>(test: (v: T) => boolean, what: string): { push(v: T): void; promise: Promise<T> } {
  let resolve!: (v: T) => void;
  const promise = withTimeout(new Promise<T>((r) => (resolve = r)), 10_000, what);
  return { push: (v) => test(v) && resolve(v), promise };
}

it('tells the backend of sessions, seeds new documents, reports changes merged and commits after they are stored', async () => {
  const secret = 'hooks-secret-0123456789abcdef';
  const events: string[] = [];
  const change = awaiting<{ text: string; fromUpdate: string }>((c) => c.text.includes('two;'), 'onChange with both edits');
  let relay!: TestRelay;
  const stored = awaiting<{ position: number; text: string }>((s) => s.text.includes('two;'), 'onStoreDocument after the second edit');
  const hooks: RelayHooks = {
    onConnect: (e) => void events.push(`connect ${e.docName} ${e.identity} ${e.permission}`),
    onDisconnect: (e) => void events.push(`disconnect ${e.docName} ${e.identity}`),
    onLoadDocument: async ({ docName, doc }) => {
      events.push(`load ${docName}`);
      await Promise.resolve();
      doc.getText('t').insert(0, 'welcome;');
    },
    onChange: ({ update, document }) => {
      const fromUpdate = new Y.Doc();
      Y.applyUpdate(fromUpdate, update);
      change.push({ text: document().getText('t').toString(), fromUpdate: fromUpdate.getText('t').toString() });
    },
    onStoreDocument: async ({ docName, position }) => {
      // Called after the commit: what it names is in storage.
      const loaded = await relay.relay.store.load(docName);
      const copy = new Y.Doc();
      for (const u of loaded.updates) Y.applyUpdate(copy, u);
      stored.push({ position, text: copy.getText('t').toString() });
    },
  };
  relay = await startRelay({ authSecret: secret, hooks, changeDebounceMs: 50 });
  relays.push(relay);

  const alice = await connectAs(relay.docUrl('fresh'), secret, 'alice');
  clients.push(alice);
  expect(alice.text).toBe('welcome;'); // seeded before she was served
  alice.type('one;');
  await alice.waitForAck(alice.type('two;'));
  const reported = await change.promise;
  expect(reported.text).toBe('welcome;one;two;');
  // Debounced: the edits of the quiet period come merged, in one call.
  expect(reported.fromUpdate).toContain('one;two;');
  expect((await stored.promise).position).toBeGreaterThan(0);

  await alice.close();
  await withTimeout(
    (async () => {
      while (!events.includes('disconnect fresh alice')) await new Promise((r) => setImmediate(r));
    })(),
    5_000,
    'onDisconnect',
  );
  expect(events.slice(0, 2)).toEqual(['load fresh', 'connect fresh alice write']);

  // A document with content is not seeded again.
  const bob = await connectAs(relay.docUrl('fresh'), secret, 'bob');
  clients.push(bob);
  expect(bob.text).toBe('welcome;one;two;');
});

it('a hook that throws or never finishes is logged and counted; documents, acks and other hooks go on', async () => {
  let calls = 0;
  const relay = await startRelay({
    hooks: {
      onConnect: () => {
        throw new Error('backend down');
      },
      onLoadDocument: () => new Promise(() => {}), // never settles: the document is served after the timeout, unseeded
      onStoreDocument: () => new Promise(() => {}),
      onChange: () => void calls++,
    },
    hookTimeoutMs: 200,
    changeDebounceMs: 10,
  });
  relays.push(relay);
  const client = await ProtocolClient.synced(relay.docUrl('d'));
  clients.push(client);
  expect(client.text).toBe('');
  for (let i = 0; i < 20; i++) client.type(`${i};`);
  await client.waitForAck(client.seq);
  await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onConnect', outcome: 'error' }, 1);
  await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onLoadDocument', outcome: 'timeout' }, 1);
  await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onStoreDocument', outcome: 'timeout' }, 1);
  // One call in flight per document: twenty commits did not start twenty stuck calls.
  expect(await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onStoreDocument', outcome: 'timeout' })).toBeLessThanOrEqual(2);
  await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onChange', outcome: 'ok' }, 1);
  expect(calls).toBeGreaterThan(0);
  // Another client is served as ever.
  const other = await ProtocolClient.synced(relay.docUrl('d'));
  clients.push(other);
  expect(other.text).toBe(client.text);
});

it('a hook past its timeout still holds its document (no second call beside it), and changes made while onChange runs are reported after an unload', async () => {
  let running = 0;
  let most = 0;
  const relayStuck = await startRelay({
    hooks: {
      onStoreDocument: () => {
        most = Math.max(most, ++running);
        return new Promise(() => {}); // hangs, past its timeout
      },
    },
    hookTimeoutMs: 50,
  });
  relays.push(relayStuck);
  const busy = await ProtocolClient.synced(relayStuck.docUrl('busy'));
  clients.push(busy);
  for (let i = 0; i < 10; i++) await busy.waitForAck(busy.type(`${i};`));
  await waitForMetric(relayStuck.httpUrl, 'capsync_hook_calls_total', { hook: 'onStoreDocument', outcome: 'timeout' }, 1);
  for (let i = 0; i < 10; i++) await busy.waitForAck(busy.type(`more ${i};`));
  expect(most).toBe(1);

  // onChange takes a while; the document unloads while it runs; what changed meanwhile still comes.
  const reported = new Y.Doc();
  let release!: () => void;
  let calls = 0;
  const relay = await startRelay({
    hooks: {
      onChange: async ({ update }) => {
        Y.applyUpdate(reported, update);
        if (++calls === 1) await new Promise<void>((r) => (release = r));
      },
    },
    changeDebounceMs: 1,
    idleTimeoutMs: 1,
  });
  relays.push(relay);
  const client = await ProtocolClient.synced(relay.docUrl('d'));
  clients.push(client);
  await client.waitForAck(client.type('first;'));
  await withTimeout((async () => { while (calls === 0) await new Promise((r) => setImmediate(r)); })(), 5_000, 'the first onChange');
  await client.waitForAck(client.type('second;'));
  await client.close();
  await withTimeout((async () => { while (relay.relay.registry.size > 0) await new Promise((r) => setImmediate(r)); })(), 5_000, 'the unload');
  release();
  await withTimeout((async () => { while (reported.getText('t').toString() !== 'first;second;') await new Promise((r) => setImmediate(r)); })(), 5_000, 'second; reported');
});


it('regression: onConnect and onDisconnect come in pairs under the in-flight bound (one dropped, the other made, made a count of sessions drift)', async () => {
  const events: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const relay = await startRelay({
    hooks: {
      onConnect: ({ docName }) => {
        events.push(`connect ${docName}`);
        if (docName === 'hold') return held; // holds the only slot until released
      },
      onDisconnect: ({ docName }) => void events.push(`disconnect ${docName}`),
    },
    maxHookCallsInFlight: 1,
  });
  relays.push(relay);
  const until = (what: string, check: () => boolean) =>
    withTimeout((async () => { while (!check()) await new Promise((r) => setImmediate(r)); })(), 10_000, what);

  const a = await ProtocolClient.synced(relay.docUrl('a'));
  await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onConnect', outcome: 'ok' }, 1);
  const hold = await ProtocolClient.synced(relay.docUrl('hold'));
  clients.push(hold);
  await until('onConnect hold', () => events.includes('connect hold'));
  // The bound is full: b's onConnect is dropped.
  const b = await ProtocolClient.synced(relay.docUrl('b'));
  await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onConnect', outcome: 'dropped' }, 1);
  expect(events).not.toContain('connect b');

  // a's onConnect was made: its onDisconnect is made too, the bound full or not.
  await a.close();
  await until('onDisconnect a, past the bound', () => events.includes('disconnect a'));

  // b's onConnect was dropped: its onDisconnect is not made, the bound free or not.
  release();
  await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onConnect', outcome: 'ok' }, 2);
  await b.close();
  await hold.close();
  await until('onDisconnect hold', () => events.includes('disconnect hold'));
  expect(events.filter((e) => e.startsWith('disconnect')).sort()).toEqual(['disconnect a', 'disconnect hold']);
});

it('a throwing or timed-out onLoadDocument leaves the document empty and loadable: one call per load, not one per client (no retry storm)', async () => {
  for (const failing of ['throws', 'times out'] as const) {
    let calls = 0;
    const relay = await startRelay({
      hooks: {
        onLoadDocument: ({ doc }) => {
          calls++;
          if (failing === 'throws') throw new Error('seed service down');
          // Writes after its time: not used.
          return new Promise<void>((r) => setTimeout(() => (doc.getText('t').insert(0, 'late seed;'), r()), 300));
        },
      },
      hookTimeoutMs: 100,
      idleTimeoutMs: 1,
    });
    relays.push(relay);
    // Five clients at once: one load, one call.
    const first = await Promise.all(Array.from({ length: 5 }, () => ProtocolClient.synced(relay.docUrl('empty'))));
    clients.push(...first);
    expect(calls, failing).toBe(1);
    for (const c of first) expect(c.text).toBe('');
    await waitForMetric(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onLoadDocument', outcome: failing === 'throws' ? 'error' : 'timeout' }, 1);
    // A client who comes while it is loaded: no call.
    const later = await ProtocolClient.synced(relay.docUrl('empty'));
    clients.push(later);
    expect(calls).toBe(1);
    // Writable as any document; once it has content, a later load does not ask again.
    await later.waitForAck(later.type('written;'));
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await withTimeout((async () => { while (relay.relay.registry.size > 0) await new Promise((r) => setImmediate(r)); })(), 5_000, 'the unload');
    const again = await ProtocolClient.synced(relay.docUrl('empty'));
    clients.push(again);
    expect(again.text).toBe('written;');
    expect(calls).toBe(1);
  }
});
