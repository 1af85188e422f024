import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient, IndexedDbStorage, type CapsyncClient, type DocHandle } from '@capsync/client';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { waitForEvent } from '../support/wait.js';

/**
 * Two "tabs" of one browser profile in one Node process: BroadcastChannel is global in Node,
 * and both clients share one IndexedDB factory, as tabs of one origin do.
 */
describe('tabs share edits over BroadcastChannel', () => {
  let relay: TestRelay;
  const clients: CapsyncClient[] = [];
  let profile: IDBFactory;

  beforeEach(async () => {
    relay = await startRelay();
    profile = new IDBFactory();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await relay.dispose();
  });

  const tab = async (doc: string, takeoverMs = 3_000): Promise<DocHandle> => {
    const client = createClient({
      url: relay.url,
      storage: new IndexedDbStorage({ factory: profile as unknown as globalThis.IDBFactory }),
      WebSocket: WebSocket as never,
      crossTab: true,
      takeoverMs,
      reconnect: { baseMs: 10, maxMs: 100 },
    });
    clients.push(client);
    return client.open(doc);
  };

  const pendingIs = (h: DocHandle, n: number) =>
    waitForEvent(h as never, 'pending', () => h.pending === n || undefined, `pending ${n}`, 10_000);

  it('an offline tab edit reaches the other tab at once, and that tab sends it to the relay for it', async () => {
    const a = await tab('takeover', 100);
    const b = await tab('takeover', 100);
    await Promise.all([a.whenSynced({ timeoutMs: 5_000 }), b.whenSynced({ timeoutMs: 5_000 })]);
    a.disconnect();
    const seen = waitForEvent(b.doc as never, 'update', () => (b.doc.getText('t').toString() === 'from a' ? true : undefined), 'edit at b', 5_000);
    a.doc.getText('t').insert(0, 'from a');
    await seen;
    expect(a.pending).toBe(1);
    expect(a.status).toBe('offline');
    // b takes the edit over after takeoverMs, the relay acks it, and a hears it is durable.
    await pendingIs(a, 0);
    const other = createClient({ url: relay.url, storage: 'memory', WebSocket: WebSocket as never, crossTab: false });
    clients.push(other);
    const c = await other.open('takeover');
    await c.whenSynced({ timeoutMs: 5_000 });
    expect(c.doc.getText('t').toString()).toBe('from a');
  });

  it('a tab opened later gets what another tab has not saved yet', async () => {
    const a = await tab('late-joiner');
    a.disconnect();
    a.doc.getText('t').insert(0, 'unsaved');
    const b = await tab('late-joiner');
    b.disconnect();
    if (b.doc.getText('t').toString() !== 'unsaved') {
      await waitForEvent(b.doc as never, 'update', () => (b.doc.getText('t').toString() === 'unsaved' ? true : undefined), 'sync from a', 5_000);
    }
    expect(b.doc.getText('t').toString()).toBe('unsaved');
  });
});
