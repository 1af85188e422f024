/**
 * Hostile review of issue 12 (lock sessions on the shared socket): the lock client's session is
 * one of the socket's sessions, so it counts against the relay's `--max-sessions-per-socket`
 * (announced as `mux-sessions:<n>`). A client whose documents (or a document's autoLoad
 * subdocuments) fill the cap had its lock session wait for one of them to close: every acquire
 * ran into its deadline and failed `unavailable` (the relay looking unreachable) although the
 * relay was up and answering the documents. Before lock sessions the lock client had a socket
 * of its own and was not affected by how many documents were open.
 *
 * Expected: with the shared socket at the cap, locks still work (the lock client keeps a lock
 * socket of its own, as with a relay whose hello lacks `locks`).
 */
import { describe, expect, it } from 'vitest';
import type { CapsyncClient, DocHandle } from '@capsync/client';
import { testScope } from '../support/test-scope.js';
import { metricValue } from '../support/relay-observe.js';

const { relay, client } = testScope();

async function edit(h: DocHandle, what: string): Promise<void> {
  h.doc.getText('t').insert(0, what);
  await h.flush();
}

describe('a lock client whose shared socket is at the relay session cap', () => {
  it('issue-12 review (lock session at cap): acquires still succeed while the documents hold every session', async () => {
    const r = await relay(['--max-sessions-per-socket', '2']);
    const c: CapsyncClient = client(r.url, { lockTimeoutMs: 3_000 });
    const docs = await Promise.all(['cap-a', 'cap-b'].map((name) => c.open(name)));
    await Promise.all(docs.map((h) => edit(h, h.name)));
    expect(await metricValue(r.httpUrl, 'capsync_sockets', { endpoint: 'mux' })).toBe(1);

    let failure: unknown = null;
    const lease = await c.locks.acquire('at-cap', { ttlMs: 5_000 }).catch((err: unknown) => ((failure = err), null));
    console.log(`lock session at cap: acquire ${lease ? `granted token ${lease.token}` : `failed: ${String(failure)}`}`);
    expect(failure).toBeNull();
    // The lock socket of its own (the fallback), beside the documents' shared socket.
    expect(await metricValue(r.httpUrl, 'capsync_sockets', { endpoint: 'locks' })).toBe(1);
    await lease!.release();
    // The documents were not disturbed.
    await Promise.all(docs.map((h) => edit(h, ' more')));
  });
});
