import 'fake-indexeddb/auto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  IndexedDbStorage,
  LocalStorageError,
  createClient,
  type CapsyncClient,
  type CapsyncError,
  type ClientOptions,
  type DocHandle,
  type DocHandleEvents,
} from '@capsync/client';
import { FailingIdb, type QuotaMode } from '../support/failing-idb.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { recordingWebSocket } from '../support/recording-websocket.js';
import { until } from '../support/client-fixture.js';

/**
 * When the browser's storage fails — full, refused, or missing — the document keeps working
 * in memory and keeps syncing; the app learns it from one typed 'error' event and from
 * `flush({ durability: 'local' })` rejecting, never from an exception or an unhandled
 * rejection.
 */

const DOC = 'notes/storage-failure';
const { WebSocket } = recordingWebSocket();

const clients: CapsyncClient[] = [];
let relay: TestRelay;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeEach(async () => {
  unhandled.length = 0;
  process.on('unhandledRejection', onUnhandled);
  relay = await startRelay();
});

afterEach(async () => {
  process.off('unhandledRejection', onUnhandled);
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await relay.dispose();
});

function client(options: Partial<ClientOptions> = {}): CapsyncClient {
  const c = createClient({ url: relay.url, storage: 'memory', WebSocket: WebSocket as never, crossTab: false, ...options });
  clients.push(c);
  return c;
}

/** Opens `DOC` and records its error events from the moment open() resolves (what an app can do). */
async function openRecording(c: CapsyncClient): Promise<{ handle: DocHandle; errors: CapsyncError[] }> {
  const handle = await c.open(DOC);
  const errors: CapsyncError[] = [];
  handle.on('error', (e) => errors.push(e));
  return { handle, errors };
}


/** Every microtask and I/O callback queued so far has run (for "no late error" checks). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

function append(handle: DocHandle, s: string): void {
  const t = handle.doc.getText('t');
  t.insert(t.length, s);
}

async function relayText(): Promise<string> {
  const reader = client();
  const handle = await reader.open(DOC);
  await handle.whenSynced({ timeoutMs: 5_000 });
  return handle.doc.getText('t').toString();
}

/** The document as a new tab of the same browser (healthy storage again) would load it, offline. */
async function reloadedText(profile: FailingIdb): Promise<{ text: string; pending: number }> {
  const handle = await client({ storage: new IndexedDbStorage({ factory: profile.inner }), connect: false }).open(DOC);
  return { text: handle.doc.getText('t').toString(), pending: handle.pending };
}

/**
 * The app's view after storage failed: `flush({ durability: 'local' })` rejects with the
 * typed error, the document keeps working and syncing, pending drains, and nothing is thrown
 * or left unhandled. With `event`, the app was also told by exactly one 'error' event.
 */
async function expectDegradedButWorking(handle: DocHandle, errors: CapsyncError[], code: string, event = true): Promise<LocalStorageError> {
  const failure = await handle.flush({ durability: 'local', timeoutMs: 5_000 }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(failure).toBeInstanceOf(LocalStorageError);
  expect((failure as LocalStorageError).code).toBe(code);
  if (event) {
    await until(handle, 'error', () => errors.length > 0, 'the error event');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBe(failure);
  }
  expect(handle.savingLocally).toBe(false);

  // Edits keep working, and keep syncing: the relay gets everything, pending drains.
  append(handle, 'after the failure');
  const text = handle.doc.getText('t').toString();
  await handle.flush({ durability: 'relay', timeoutMs: 5_000 });
  expect(handle.pending).toBe(0);
  await until(handle, 'status', () => handle.status === 'synced', 'synced');
  expect(await relayText()).toBe(text);

  // Later local flushes keep saying so, without new events or anything unhandled.
  await expect(handle.flush({ durability: 'local', timeoutMs: 5_000 })).rejects.toBe(failure);
  await settle();
  expect(errors.length).toBe(event ? 1 : errors.length);
  expect(errors.every((e) => e === failure)).toBe(true);
  expect(unhandled).toEqual([]);
  return failure as LocalStorageError;
}

/** Opens `DOC` with storage quota running out at its next write, and makes that write. */
async function runOutOfQuota(how: QuotaMode) {
  const profile = new FailingIdb();
  const { handle, errors } = await openRecording(client({ storage: new IndexedDbStorage({ factory: profile }) }));
  append(handle, 'saved; ');
  await handle.flush({ durability: 'local', timeoutMs: 5_000 });
  await handle.flush({ durability: 'relay', timeoutMs: 5_000 });
  expect(errors).toEqual([]);
  profile.quotaAfterWrites(0, how);
  append(handle, 'not saved; ');
  return { handle, errors, profile };
}

/** Two committed updates, then a batch of two updates whose second write is over quota. */
async function halfOverQuota(how: QuotaMode) {
  const profile = new FailingIdb();
  const { handle } = await openRecording(client({ storage: new IndexedDbStorage({ factory: profile }), connect: false }));
  append(handle, 'one; ');
  append(handle, 'two; ');
  await handle.flush({ durability: 'local', timeoutMs: 5_000 });
  profile.quotaAfterWrites(1, how);
  append(handle, 'three; ');
  append(handle, 'four; ');
  await expect(handle.flush({ durability: 'local', timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'quota-exceeded' });
  return profile;
}

/** The three ways IndexedDB can be unusable from the start. */
const unusable = {
  'open fails with an error event (Firefox private mode)': () => ({ storage: new IndexedDbStorage({ factory: new FailingIdb().failOpen('error') }) }),
  'open throws (storage blocked)': () => ({ storage: new IndexedDbStorage({ factory: new FailingIdb().failOpen('throw') }) }),
  'no IndexedDB at all': () => ({ storage: 'indexeddb' as const }),
};
type Unusable = keyof typeof unusable;

/** Runs `body` with every IndexedDB global removed when the case asks for a browser without it. */
async function inBrowserWith<T>(which: Unusable, body: () => Promise<T>): Promise<T> {
  if (which !== 'no IndexedDB at all') return body();
  const names = Object.getOwnPropertyNames(globalThis).filter((n) => n === 'indexedDB' || n.startsWith('IDB'));
  const saved = names.map((n) => [n, Object.getOwnPropertyDescriptor(globalThis, n)!] as const);
  for (const n of names) delete (globalThis as Record<string, unknown>)[n];
  try {
    expect('indexedDB' in globalThis).toBe(false);
    return await body();
  } finally {
    for (const [n, d] of saved) Object.defineProperty(globalThis, n, d);
  }
}

describe('quota exceeded', () => {
  it.each<QuotaMode>(['abort', 'throw'])(
    'quota exceeded (%s): a quota-exceeded event, the document keeps working and syncing, local flush rejects',
    async (how) => {
      const { handle, errors } = await runOutOfQuota(how);
      await expectDegradedButWorking(handle, errors, 'quota-exceeded');
    },
  );

  it.each<QuotaMode>(['abort', 'request'])(
    'a batch that runs out of quota (%s) is not half-stored: a reload shows the state before it, with its pending count',
    async (how) => {
      const profile = await halfOverQuota(how);
      expect(await reloadedText(profile)).toEqual({ text: 'one; two; ', pending: 2 });
    },
  );
});

describe('IndexedDB refused or missing', () => {
  it.each(Object.keys(unusable) as Unusable[])('%s: the document works in memory and syncs; local flush rejects with local-storage-unavailable', async (which) =>
    inBrowserWith(which, async () => {
      const { handle, errors } = await openRecording(client(unusable[which]()));
      await handle.whenSynced({ timeoutMs: 5_000 });
      append(handle, 'in memory; ');
      // The event itself: see the regression tests below.
      await expectDegradedButWorking(handle, errors, 'local-storage-unavailable', false);
    }),
  );
});

describe('fixed client bugs (regression tests)', () => {
  // The replica's load-time failure is emitted on a microtask queued during open(), which
  // runs before open() resolves: an app that subscribes right after `await client.open()`
  // (the README's way) never hears of it.
  it.each(Object.keys(unusable) as Unusable[])('%s: the app that subscribes when open() resolves gets the error event', async (which) =>
    inBrowserWith(which, async () => {
      const { handle, errors } = await openRecording(client(unusable[which]()));
      await until(handle, 'error', () => errors.length > 0, 'the error event', 1_000);
      expect(errors.map((e) => e.code)).toEqual(['local-storage-unavailable']);
    }),
  );

  // Firefox reports quota at the request; the transaction then aborts and its other requests
  // fail with AbortError. IndexedDbReplicaStore.write() fires its requests with `void`, so
  // those rejections are unhandled (window 'unhandledrejection' in a browser).
  it('quota exceeded (request): no unhandled rejections', async () => {
    const { handle, errors } = await runOutOfQuota('request');
    await expectDegradedButWorking(handle, errors, 'quota-exceeded');
  });

  // A write that throws part way through a batch does not abort its transaction, so the
  // requests made before the throw commit: half a batch, without its outbox record.
  it('a batch whose write throws part way (throw) is not half-stored', async () => {
    const profile = await halfOverQuota('throw');
    expect(await reloadedText(profile)).toEqual({ text: 'one; two; ', pending: 2 });
  });
});
