/**
 * The search backend example (examples/search-backend) against a real relay: documents edited by
 * a client become searchable through signed `document.changed` webhooks, fetched from
 * `documentUrl` with a read token (and taken from the payload with `document: 'json'`); a
 * delivery with a wrong signature is refused (401) and a retry of a handled event changes nothing.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { createSearchBackend } from '../../examples/search-backend/src/search-backend.js';
import { connectAs } from '../support/client-ids.js';
import { startRelay } from '../support/relay-fixture.js';
import { mintToken } from '../support/tokens.js';
import { waitForEvent } from '../support/wait.js';

const secret = 'search-webhook-secret-0123456789';
const authSecret = 'search-auth-secret-0123456789';
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function backend(relayToken?: string) {
  const b = createSearchBackend({ secret, ...(relayToken ? { relayToken } : {}) });
  const server = http.createServer(b.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return { ...b, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function search(url: string, q: string): Promise<string[]> {
  return ((await (await fetch(`${url}/search?q=${encodeURIComponent(q)}`)).json()) as { docs: string[] }).docs;
}

/** Resolves once the backend indexed `docName` with its index then answering `q` with it. */
async function indexed(b: Awaited<ReturnType<typeof backend>>, docName: string, q: string): Promise<void> {
  await waitForEvent(b.events, 'indexed', () => b.index.search(q).includes(docName) || undefined, `${docName} indexed for "${q}"`);
}

it('indexes documents from document.changed (fetched from documentUrl with a read token), refuses bad signatures, ignores retries', async () => {
  const reader = await mintToken(authSecret, { sub: 'search-indexer', docs: { '*': 'read' }, lifetimeS: 3600 });
  const search_ = await backend(reader);
  const relay = await startRelay({ authSecret, changeDebounceMs: 20, webhooks: { endpoints: [{ url: `${search_.url}/webhooks`, events: ['document.changed'] }], secret } });
  cleanups.push(() => relay.dispose());

  const alice = await connectAs(relay.docUrl('recipes'), authSecret, 'alice');
  cleanups.push(() => alice.close());
  await alice.waitForAck(alice.type('Lemon tart with almond crust'));
  await indexed(search_, 'recipes', 'almond');
  expect(await search(search_.url, 'lemon tart')).toEqual(['recipes']);
  expect(await search(search_.url, 'chocolate')).toEqual([]);

  // Edits replace what was indexed.
  await alice.waitForAck(alice.type(' and chocolate'));
  await indexed(search_, 'recipes', 'chocolate');

  // Forged or replayed deliveries are refused or ignored.
  const body = JSON.stringify({ id: 'forged', type: 'document.changed', data: { docName: 'evil', document: { t: 'malware' } } });
  const forged = await fetch(`${search_.url}/webhooks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'webhook-id': 'forged', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' },
    body,
  });
  expect(forged.status).toBe(401);
  expect(await search(search_.url, 'malware')).toEqual([]);

  // A retry of a handled event (same webhook-id) is acknowledged and changes nothing.
  const signed = (id: string, data: unknown) => {
    const b = JSON.stringify({ id, type: 'document.changed', createdAt: new Date().toISOString(), data });
    const ts = String(Math.floor(Date.now() / 1000));
    const sig = createHmac('sha256', secret).update(`${id}.${ts}.${b}`).digest('base64');
    return fetch(`${search_.url}/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': `v1,${sig}` }, body: b });
  };
  expect((await signed('evt-1', { docName: 'memo', document: { t: 'first version' } })).status).toBe(204);
  expect((await signed('evt-1', { docName: 'memo', document: { t: 'replaced' } })).status).toBe(204);
  expect(await search(search_.url, 'first')).toEqual(['memo']);
  expect(await search(search_.url, 'replaced')).toEqual([]);
});

it('takes the JSON from the payload with document: json (no fetch back)', async () => {
  const search_ = await backend();
  const relay = await startRelay({ changeDebounceMs: 20, webhooks: { endpoints: [`${search_.url}/webhooks`], secret, document: 'json' } });
  cleanups.push(() => relay.dispose());
  // An open relay, and a backend without a token: everything it indexes comes in the payload.
  const bob = await connectAs(relay.docUrl('notes'), 'unused', 'bob');
  cleanups.push(() => bob.close());
  await bob.waitForAck(bob.type('Quarterly planning notes'));
  await indexed(search_, 'notes', 'quarterly');
  expect(await search(search_.url, 'planning notes')).toEqual(['notes']);
});
