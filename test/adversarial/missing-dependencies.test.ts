import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { CloseCode } from '@capsync/core';
import { SqliteDocStore } from '@capsync/server';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';

/**
 * issue 11, attack 5 (dangling dependencies): 200 updates whose dependencies never arrive were
 * acknowledged and stored (5 MB), though they can never be served.
 */

const UPDATES = 200;
// 25 KB each with `heavy` (5 MB in all, as in the issue: past --max-pending-bytes-per-doc).
const CHUNK = 'x'.repeat(heavy ? 25_000 : 500);
const TIMEOUT_MS = 1000;

/** The updates `doc` emits while `edit` runs. */
function updatesOf(doc: Y.Doc, edit: () => void): Uint8Array[] {
  const out: Uint8Array[] = [];
  const capture = (u: Uint8Array) => out.push(u);
  doc.on('update', capture);
  edit();
  doc.off('update', capture);
  return out;
}

/** Everything stored for `name` in the relay's SQLite file (read with the relay stopped). */
async function stored(dataDir: string, name: string): Promise<{ bytes: number; text: string }> {
  const store = new SqliteDocStore(path.join(dataDir, 'capsync.db'));
  try {
    const { updates } = await store.load(name);
    const doc = new Y.Doc();
    for (const u of updates) Y.applyUpdate(doc, u);
    return { bytes: updates.reduce((n, u) => n + u.byteLength, 0), text: doc.getText('t').toString() };
  } finally {
    await store.close();
  }
}

describe('adversarial: dangling dependencies (issue 11, attack 5)', () => {
  it(`issue-11 attack 5: ${UPDATES} updates whose dependencies never arrive are refused (missing-dependencies), never acked nor stored`, async () => {
    await using relay = await startAttackedRelay(['--pending-timeout-ms', String(TIMEOUT_MS)]);
    const rssBefore = await relay.rss();
    const bystander = await startBystander(relay.url);
    const attacker = await ProtocolClient.synced(`${relay.url}/dangling`);
    await attacker.waitForAck(attacker.seq, 30_000); // its initial sync step 2
    const ackedBefore = attacker.ackedSeq;
    // Every update builds on a first one that is never sent.
    const source = new Y.Doc();
    updatesOf(source, () => source.getText('t').insert(0, 'never sent'));
    const dangling: Uint8Array[] = [];
    for (let i = 0; i < UPDATES; i++) dangling.push(...updatesOf(source, () => source.getText('t').insert(0, CHUNK)));
    for (const update of dangling) attacker.sendMessage({ type: 'update', update });
    const closed = await attacker.waitClosed(TIMEOUT_MS + 15_000);
    const rtts = await bystander.stop();
    const rssGrowth = (await relay.rss()) - rssBefore;
    console.log(
      `attack 5 (dangling): ${dangling.length} updates of ${dangling[0]!.byteLength} bytes -> close ${closed.code} "${closed.reason}"; relay RSS +${(rssGrowth / 1e6).toFixed(1)} MB; bystander worst round trip ${worst(rtts).toFixed(0)} ms`,
    );
    if (heavy) {
      // 5 MB cannot even wait: past --max-pending-bytes-per-doc (1 MiB) they are refused at once.
      expect([CloseCode.InvalidUpdate, CloseCode.LimitExceeded]).toContain(closed.code);
    } else {
      expect(closed.code).toBe(CloseCode.InvalidUpdate);
      expect(closed.reason).toMatch(/^missing-dependencies: /);
    }
    expect(attacker.ackedSeq, 'none of them was acknowledged').toBe(ackedBefore);
    // ~0.3 s of Yjs work for the 200 updates on this machine: the bystander is served throughout.
    expect(worst(rtts)).toBeLessThan(2000);
    expect(rssGrowth).toBeLessThan(100 * 1024 * 1024);
    // Other clients are served, and the relay serves nothing of it.
    const reader = await ProtocolClient.synced(`${relay.url}/dangling`);
    expect(reader.text).toBe('');
    await reader.close();
    // Nothing of it was stored.
    await killRelay(relay);
    expect(await stored(relay.dataDir, 'dangling')).toEqual({ bytes: 0, text: '' });
  });

  it('issue-11 attack 5: dangling updates past --max-pending-bytes-per-doc are refused at once (4413), never stored', async () => {
    await using relay = await startAttackedRelay(['--pending-timeout-ms', '60000', '--max-pending-bytes-per-doc', '20000']);
    const attacker = await ProtocolClient.synced(`${relay.url}/dangling`);
    await attacker.waitForAck(attacker.seq, 30_000); // its initial sync step 2
    const ackedBefore = attacker.ackedSeq;
    const source = new Y.Doc();
    updatesOf(source, () => source.getText('t').insert(0, 'never sent'));
    for (let i = 0; i < UPDATES; i++) {
      for (const update of updatesOf(source, () => source.getText('t').insert(0, 'y'.repeat(500)))) attacker.sendMessage({ type: 'update', update });
    }
    // Well before the 60 s timeout: the byte cap, not the clock, refuses them.
    const closed = await attacker.waitClosed(15_000);
    expect(closed.code).toBe(CloseCode.LimitExceeded);
    expect(closed.reason).toMatch(/^limit-exceeded: .*20000 bytes/);
    expect(attacker.ackedSeq).toBe(ackedBefore);
    const metrics = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/capsync_limit_refusals_total\{limit="max-pending-bytes-per-doc"\} [1-9]/);
    const reader = await ProtocolClient.synced(`${relay.url}/dangling`);
    expect(reader.text).toBe('');
    await reader.close();
    await killRelay(relay);
    expect(await stored(relay.dataDir, 'dangling')).toEqual({ bytes: 0, text: '' });
  });

  it('issue-11 attack 5: a legit out-of-order pair (tab 2 builds on tab 1, arrives first) is acked once complete, and stored', async () => {
    await using relay = await startAttackedRelay(['--pending-timeout-ms', '20000']);
    const url = `${relay.url}/out-of-order`;
    const tab1Doc = new Y.Doc();
    const tab2Doc = new Y.Doc();
    const [first] = updatesOf(tab1Doc, () => tab1Doc.getText('t').insert(0, 'one'));
    Y.applyUpdate(tab2Doc, first!);
    const [second] = updatesOf(tab2Doc, () => tab2Doc.getText('t').insert(3, ' two'));
    const tab2 = await ProtocolClient.synced(url);
    const tab1 = await ProtocolClient.synced(url);
    tab2.sendMessage({ type: 'update', update: second! });
    // The relay has taken it in (a ping after it is answered), and holds its ack back.
    tab2.sendMessage({ type: 'ping', id: 1 });
    await tab2.waitFor(() => tab2.received.some((m) => m.type === 'pong') || undefined, 'pong');
    expect(tab2.ackedSeq).toBeLessThan(tab2.seq);
    expect(tab1.text).toBe('');
    tab1.sendMessage({ type: 'update', update: first! });
    await Promise.all([tab1.waitForAck(tab1.seq), tab2.waitForAck(tab2.seq)]);
    const reader = await ProtocolClient.synced(url);
    expect(reader.text).toBe('one two');
    await Promise.all([reader.close(), tab1.close(), tab2.close()]);
    await killRelay(relay);
    expect((await stored(relay.dataDir, 'out-of-order')).text).toBe('one two');
    // And it loads back on a restarted relay.
    const restarted = await spawnRelay(['--data', relay.dataDir]);
    try {
      const after = await ProtocolClient.synced(`${restarted.url}/out-of-order`);
      expect(after.text).toBe('one two');
      await after.close();
    } finally {
      await killRelay(restarted);
    }
  });
});
