/**
 * The relay's CAP choice when its storage cannot be reached (a database down or partitioned
 * away; issue 13): the clients connected to it stay served — their edits reach each other and a
 * new client still syncs — but nothing is acknowledged and /readyz answers 503; once storage is
 * back, everything accepted meanwhile is committed and acknowledged.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import WebSocket from 'ws';
import { MemoryDocStore } from '@capsync/core';
import { createClient, type WebSocketConstructor } from '@capsync/client';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { codeOf } from '../support/error-code.js';
import { UnreachableStore } from '../support/gated-store.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { metricValue, waitForMetric } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';

let relay: TestRelay | null = null;
afterEach(async () => {
  await relay?.dispose();
  relay = null;
});

async function readyz(httpUrl: string): Promise<number> {
  return (await fetch(`${httpUrl}/readyz`)).status;
}

describe('storage that cannot be reached', () => {
  it('keeps serving connected clients and new ones, acknowledges nothing, answers /readyz 503; commits and acknowledges all of it once storage is back', async () => {
    const inner = new MemoryDocStore();
    const store = new UnreachableStore(inner);
    relay = await startRelay({ storage: store });
    const a = await ProtocolClient.synced(relay.docUrl('outage'));
    const b = await ProtocolClient.synced(relay.docUrl('outage'));
    expect(await readyz(relay.httpUrl)).toBe(200);

    store.down();
    const seq = a.type('written while storage is down');
    await b.waitFor(() => b.text === 'written while storage is down' || undefined, "a's edit at b");
    // The relay tries again: wait for a retry, then check nothing was acknowledged.
    await waitForMetric(relay.httpUrl, 'capsync_storage_retries_total', {}, 1, 10_000);
    a.sendMessage({ type: 'ping', id: 1 });
    await a.waitFor(() => a.received.some((m) => m.type === 'pong') || undefined, 'pong');
    expect(a.ackedSeq).toBeLessThan(seq);
    expect(a.closeInfo).toBeNull();
    expect(await readyz(relay.httpUrl)).toBe(503);
    expect(await metricValue(relay.httpUrl, 'capsync_storage_waiting_appends')).toBeGreaterThanOrEqual(1);
    // A client that connects now is served from memory.
    const c = await ProtocolClient.synced(relay.docUrl('outage'));
    expect(c.text).toBe('written while storage is down');
    b.type('!');
    await a.waitFor(() => a.text.endsWith('!') || undefined, "b's edit at a");

    store.up();
    await a.waitForAck(seq, 10_000);
    await b.waitForAck(b.seq, 10_000);
    expect(await metricValue(relay.httpUrl, 'capsync_storage_waiting_appends')).toBe(0);
    expect(await readyz(relay.httpUrl)).toBe(200);
    const stored = new Y.Doc();
    for (const u of (await inner.load('outage')).updates) Y.applyUpdate(stored, u);
    expect(stored.getText('t').toString()).toBe(a.text);
    for (const p of [a, b, c]) await p.close();
  });

  it('on a relay with auth, the client id claims of a first edit wait with it and commit before its ack', async () => {
    const inner = new MemoryDocStore();
    const store = new UnreachableStore(inner);
    const secret = 'storage-outage-secret-of-at-least-32-bytes!';
    relay = await startRelay({ storage: store, authSecret: secret });
    const url = `${relay.docUrl('claims')}?token=${await mintToken(secret, { sub: 'alice' })}`;
    const a = await ProtocolClient.synced(url);
    store.down();
    const seq = a.type('first edit: a new client id');
    await waitForMetric(relay.httpUrl, 'capsync_storage_retries_total', {}, 1, 10_000);
    expect(a.closeInfo).toBeNull();
    expect(a.ackedSeq).toBeLessThan(seq);
    store.up();
    await a.waitForAck(seq, 10_000);
    expect(await inner.loadClientOwners('claims')).toContainEqual([a.doc.clientID, 'alice']);
    await a.close();
  });

  it('a fenced (CP) write while storage cannot be reached is refused unavailable at once, and the document stays served; it goes through once storage is back', async () => {
    const store = new UnreachableStore(new MemoryDocStore());
    relay = await startRelay({ storage: store });
    const client = createClient({ url: relay.url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS });
    try {
      const h = await client.open('shop');
      await h.whenSynced({ timeoutMs: 10_000 });
      const lease = await client.locks.acquire('stock/1', { ttlMs: 30_000 });
      const other = await ProtocolClient.synced(relay.docUrl('shop'));
      store.down();
      other.type('typed while storage is down');
      await waitForMetric(relay.httpUrl, 'capsync_storage_retries_total', {}, 1, 10_000);
      const started = performance.now();
      expect(await codeOf(h.cp.set('stock/1', 5, lease, { timeoutMs: 5_000 }))).toBe('unavailable');
      expect(performance.now() - started).toBeLessThan(4_000);
      expect(h.cp.get('stock/1')).toBeUndefined();
      // AP traffic of the document is not held by the refused write.
      other.type('!');
      await new Promise<void>((resolve) => {
        const check = (): void => {
          if (!h.doc.getText('t').toString().endsWith('!')) return;
          h.doc.off('update', check);
          resolve();
        };
        h.doc.on('update', check);
        check();
      });
      store.up();
      await other.waitForAck(other.seq, 10_000);
      await h.cp.set('stock/1', 5, lease, { timeoutMs: 10_000 });
      expect(h.cp.get('stock/1')).toBe(5);
      await lease.release();
      await other.close();
    } finally {
      await client.close();
    }
  });

  it('a relay closing while storage cannot be reached does not wait for it (what waits was never acknowledged)', async () => {
    const store = new UnreachableStore(new MemoryDocStore());
    relay = await startRelay({ storage: store });
    const a = await ProtocolClient.synced(relay.docUrl('closing'));
    store.down();
    const seq = a.type('never acknowledged');
    await waitForMetric(relay.httpUrl, 'capsync_storage_retries_total', {}, 1, 10_000);
    const closing = relay.dispose();
    relay = null;
    await expect(closing).resolves.toBeUndefined();
    expect(a.ackedSeq).toBeLessThan(seq);
  });
});
