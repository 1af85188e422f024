/**
 * Cluster mode (issue 13) under faults: a relay process SIGKILLed (its clients fail over to
 * another relay of the cluster), one relay cut off from the database through the fault proxy
 * (held: nothing answers; reset: every connection refused), and PostgreSQL itself SIGKILLed and
 * restarted under load. In all of them nothing acknowledged is lost, the relay without its
 * database keeps serving its own clients without acknowledging, and everything accepted meanwhile
 * is committed and reaches every relay once the database is back.
 */
import { afterEach, expect, it } from 'vitest';
import pg from 'pg';
import WebSocket from 'ws';
import { docFromUpdates } from '@capsync/core';
import { createClient, type WebSocketConstructor } from '@capsync/client';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { describePostgres } from '../support/describe-postgres.js';
import { FaultProxy, type FaultMode } from '../support/fault-proxy.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, tempDir, type TestRelay } from '../support/relay-fixture.js';
import { metricValue } from '../support/relay-observe.js';
import { killRelay, spawnRelay, type RelayProcess } from '../support/relay-process.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The text of `doc` as the database holds it (snapshot, then log). */
async function storedText(url: string, doc: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ data: Buffer }>(
      `SELECT data FROM (SELECT 0 AS k, through AS pos, data FROM capsync_doc_snapshots WHERE doc = $1
         UNION ALL SELECT 1, pos, data FROM capsync_doc_updates WHERE doc = $1) t ORDER BY k, pos`,
      [doc],
    );
    const { doc: ydoc } = docFromUpdates(rows.map((r) => new Uint8Array(r.data)));
    const text = ydoc.getText('t').toString();
    ydoc.destroy();
    return text;
  } finally {
    await client.end();
  }
}

async function relayProcess(url: string): Promise<RelayProcess> {
  const data = tempDir('capsync-cluster-');
  const relay = await spawnRelay(['--postgres', url, '--data', data.dir]);
  cleanups.push(() => data.remove(), () => killRelay(relay));
  return relay;
}

describePostgres('a cluster on PostgreSQL under crashes', (server) => {
  it('a relay SIGKILLed: its client fails over to another relay of the cluster, and every acknowledged edit, and every later one, is there', async () => {
    const url = await server().createDatabase();
    const first = await relayProcess(url);
    const second = await relayProcess(url);
    const client = createClient({ url: [first.url, second.url], storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS });
    cleanups.push(() => client.close());
    const h = await client.open('failover');
    await h.whenSynced({ timeoutMs: 10_000 });
    const watcher = await ProtocolClient.synced(`${second.url}/failover`);
    cleanups.push(() => watcher.close());
    const text = h.doc.getText('t');
    const markers = Array.from({ length: 20 }, (_, i) => `<${i}>`);
    for (const m of markers.slice(0, 10)) text.insert(text.length, m);
    await h.flush({ durability: 'relay', timeoutMs: 10_000 });
    // Acknowledged by the first relay: committed, so the second has it without the first.
    await killRelay(first, 'SIGKILL');
    for (const m of markers.slice(10)) text.insert(text.length, m);
    await h.flush({ durability: 'relay', timeoutMs: 30_000 });
    await watcher.waitFor(() => markers.every((m) => watcher.text.includes(m)) || undefined, 'every edit on the second relay', 20_000);
    expect(watcher.text).toBe(text.toString());
    expect(await storedText(url, 'failover')).toBe(text.toString());
  });

  for (const mode of ['hold', 'reset'] as FaultMode[]) {
    it(`one relay cut off from the database (${mode}): it serves its clients, acknowledges nothing, /readyz 503, while the other relay goes on; healed, both have everything`, async () => {
      const url = await server().createDatabase();
      const proxy = await FaultProxy.start(server().port, { name: 'relay→postgres' });
      cleanups.push(() => proxy.close());
      const viaProxy = url.replace(`:${server().port}/`, `:${proxy.port}/`);
      const cut = await startRelay({ postgres: viaProxy, postgresTimeoutMs: 1_000 });
      const healthy = await startRelay({ postgres: url });
      cleanups.push(() => Promise.all([cut.dispose(), healthy.dispose()]));
      const onCut = await ProtocolClient.synced(cut.docUrl('cut'));
      const alsoOnCut = await ProtocolClient.synced(cut.docUrl('cut'));
      const onHealthy = await ProtocolClient.synced(healthy.docUrl('cut'));
      cleanups.push(() => Promise.all([onCut.close(), alsoOnCut.close(), onHealthy.close()]));
      onCut.type('<before>');
      await onHealthy.waitForText('<before>');

      proxy.setMode(mode);
      const cutSeq = onCut.type('<cut off>');
      const healthySeq = onHealthy.type('<healthy>');
      await alsoOnCut.waitFor(() => alsoOnCut.text.includes('<cut off>') || undefined, "the cut-off relay's edit on its other client");
      await onHealthy.waitForAck(healthySeq);
      await waitForStatus(`${cut.httpUrl}/readyz`, 503);
      expect(await fetch(`${healthy.httpUrl}/readyz`).then((r) => r.status)).toBe(200);
      expect(await metricValue(cut.httpUrl, 'capsync_storage_reachable')).toBe(0);
      expect(await metricValue(healthy.httpUrl, 'capsync_storage_reachable')).toBe(1);
      expect(onCut.ackedSeq).toBeLessThan(cutSeq);

      proxy.setMode('pass');
      await onCut.waitForAck(cutSeq, 30_000);
      for (const c of [onCut, alsoOnCut, onHealthy]) {
        await c.waitFor(() => ['<before>', '<cut off>', '<healthy>'].every((m) => c.text.includes(m)) || undefined, 'everything everywhere', 30_000);
      }
      expect(onHealthy.text).toBe(onCut.text);
      expect(await storedText(url, 'cut')).toBe(onCut.text);
      await waitForStatus(`${cut.httpUrl}/readyz`, 200);
      expect(await metricValue(cut.httpUrl, 'capsync_storage_reachable')).toBe(1);
      expect(await metricValue(cut.httpUrl, 'capsync_storage_reachability_changes_total')).toBeGreaterThanOrEqual(2);
      expect(await metricValue(cut.httpUrl, 'capsync_storage_pool_in_use')).toBeGreaterThanOrEqual(0);
    }, 90_000);
  }

  // Last: it kills the suite's server (and starts it again).
  it('PostgreSQL SIGKILLed and restarted under load: each relay keeps serving its clients and acknowledges nothing meanwhile; then everything is committed and reaches every relay', async () => {
    const url = await server().createDatabase();
    const relays: TestRelay[] = await Promise.all([startRelay({ postgres: url }), startRelay({ postgres: url })]);
    cleanups.push(() => Promise.all(relays.map((r) => r.dispose())));
    const [a, b] = relays as [TestRelay, TestRelay];
    const onA = await ProtocolClient.synced(a.docUrl('crash'));
    const alsoOnA = await ProtocolClient.synced(a.docUrl('crash'));
    const onB = await ProtocolClient.synced(b.docUrl('crash'));
    cleanups.push(() => Promise.all([onA.close(), alsoOnA.close(), onB.close()]));

    const before: string[] = [];
    for (let i = 0; i < 10; i++) {
      before.push(`<a${i}>`, `<b${i}>`);
      onA.type(`<a${i}>`);
      onB.type(`<b${i}>`);
    }
    await Promise.all([onA.waitForAck(onA.seq), onB.waitForAck(onB.seq)]);

    await server().kill();
    const during: string[] = [];
    for (let i = 0; i < 10; i++) {
      during.push(`<A${i}>`, `<B${i}>`);
      onA.type(`<A${i}>`);
      onB.type(`<B${i}>`);
    }
    // Available: a's clients still get each other's edits.
    await alsoOnA.waitFor(() => onA.text.includes('<A9>') && alsoOnA.text.includes('<A9>') || undefined, "a's edits on a's other client");
    // Not acknowledged while the database is down, and the relays say they are not ready.
    for (const r of relays) await waitForStatus(`${r.httpUrl}/readyz`, 503);
    expect(onA.ackedSeq).toBeLessThan(onA.seq);
    expect(onB.ackedSeq).toBeLessThan(onB.seq);

    await server().start();
    await Promise.all([onA.waitForAck(onA.seq, 60_000), onB.waitForAck(onB.seq, 60_000)]);
    const all = [...before, ...during];
    for (const c of [onA, alsoOnA, onB]) await c.waitFor(() => all.every((m) => c.text.includes(m)) || undefined, 'every edit on every client', 30_000);
    expect(onB.text).toBe(onA.text);
    expect(await storedText(url, 'crash')).toBe(onA.text);
    for (const r of relays) await waitForStatus(`${r.httpUrl}/readyz`, 200);
  }, 120_000);
});

/** Polls `url` until it answers `status` (readiness is a poll by nature: what a load balancer does). */
async function waitForStatus(url: string, status: number, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = 0;
  while (performance.now() < deadline) {
    last = await fetch(url).then((r) => r.status, () => 0);
    if (last === status) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${url} answered ${last}, not ${status}, for ${timeoutMs} ms`);
}
