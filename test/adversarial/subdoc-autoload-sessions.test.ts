/**
 * Hostile review of issue 12 (P6, subdocuments): a writer of a shared document adds more
 * `autoLoad` subdocuments than the relay allows sessions on one socket. Every reader that opens
 * the document loads them all (Yjs marks them loaded on arrival; Subdocs opens a handle and a
 * session for each), so the reader's one multiplexed socket asks for more sessions than
 * `--max-sessions-per-socket`. The refusals come in a row, and past
 * `--max-refused-opens-per-socket` the relay closes the whole socket (4413): every document of
 * the reader goes offline, again after each reconnect — one document's writer takes the
 * reader's other documents down. Expected: the reader's other documents keep their session
 * (the relay announces its cap in its hello, `mux-sessions:<n>`, and the client keeps below it:
 * the documents past it wait for a session to end).
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { createClient, type CapsyncClient, type CapsyncError, type DocHandle } from '@capsync/client';
import { TEST_CLIENT_DEFAULTS, until } from '../support/client-fixture.js';
import { metricValue } from '../support/relay-observe.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import type { EventEmitter } from 'node:events';
import { waitForEvent } from '../support/wait.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

function client(url: string): CapsyncClient {
  const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as never, ...TEST_CLIENT_DEFAULTS });
  cleanups.push(() => c.close());
  return c;
}

const CAP = 10;
const REFUSED = 3;
const SUBDOCS = 20;

describe('issue-12 review (subdoc autoLoad sessions)', () => {
  it(`a writer's ${SUBDOCS} autoLoad subdocuments do not close a reader's socket (cap ${CAP} sessions) and its other documents`, async () => {
    const relay = await RestartableRelay.start(['--max-sessions-per-socket', String(CAP), '--max-refused-opens-per-socket', String(REFUSED)]);
    cleanups.push(() => relay.dispose());
    const reader = client(relay.url);
    const writer = client(relay.url);
    const readerOther: DocHandle = await reader.open('other');
    const readerNotebook = await reader.open('notebook');
    await Promise.all([readerOther.whenSynced(), readerNotebook.whenSynced()]);

    const notebook = await writer.open('notebook');
    const other = await writer.open('other');
    await Promise.all([notebook.whenSynced(), other.whenSynced()]);
    notebook.doc.transact(() => {
      for (let i = 0; i < SUBDOCS; i++) notebook.doc.getMap<Y.Doc>('pages').set(`p${i}`, new Y.Doc({ guid: `page-${i}`, autoLoad: true }));
    });
    // The reader loads them all (a handle each).
    await waitForEvent(readerNotebook.doc as unknown as EventEmitter, 'subdocs', () => readerNotebook.subdocs.guids.length === SUBDOCS || undefined, 'the reader loads every page');

    // A write to the reader's other document reaches it (it is connected now)...
    other.doc.getText('t').insert(0, 'after the pages');
    try {
      await waitForEvent(readerOther.doc as unknown as EventEmitter, 'update', () => readerOther.doc.getText('t').toString() === 'after the pages' || undefined, 'the write at the reader', 15_000);
    } finally {
      const refusals = await Promise.all(
        ['max-sessions-per-socket', 'max-refused-opens-per-socket'].map(async (limit) => `${limit}: ${await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit })}`),
      );
      console.log(`subdoc autoLoad sessions: limit refusals ${refusals.join(', ')}; reader other ${readerOther.status}, writer other ${other.status}`);
    }
    // ...but was its socket closed meanwhile, for opens it never chose to make?
    const closedForRefusals = await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-refused-opens-per-socket' });
    expect(closedForRefusals, 'sockets closed for refused opens').toBe(0);

    // The pages past the cap wait for a session; one that ends lets the next one open.
    const pages = await Promise.all(readerNotebook.subdocs.guids.map((g) => readerNotebook.subdocs.get(g)));
    const synced = (): number => pages.filter((p) => p.status === 'synced').length;
    // Re-checked on any page's status change (until() alone listens to one handle).
    await Promise.race(pages.map((p) => until(p, 'status', () => synced() >= CAP - 2, `${CAP - 2} pages synced`, 10_000)));
    const waiting = pages.filter((p) => p.status !== 'synced');
    expect(waiting.length, 'pages waiting for a session').toBe(SUBDOCS - (CAP - 2));
    // A document opened now waits too, and says why.
    const late = await reader.open('late');
    const told = await new Promise<CapsyncError>((resolve) => late.on('error', resolve));
    expect(told.code).toBe('limit-exceeded');
    expect(told.message).toMatch(/waits for a session: the socket has the relay's 10 sessions open/);
    await late.close();
    await readerOther.close();
    await until(waiting[0]!, 'status', () => waiting[0]!.status === 'synced', 'a waiting page syncs once a session ended', 10_000);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-sessions-per-socket' })).toBe(0);
  });
});
