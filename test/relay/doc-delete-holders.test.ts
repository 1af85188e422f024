/**
 * A holder of a document across its delete (a server document, an HTTP PATCH whose append
 * waits, a session closed by the delete) releases only the copy it acquired, never the new
 * incarnation's copy: else that copy's holder count drops to 0 under a connected client, it is
 * unloaded, and the next client loads a second copy (split brain: the two never see each other).
 */
import { afterEach, expect, it } from 'vitest';
import { MemoryDocStore } from '@capsync/core';
import { GatedAppendStore } from '../support/gated-store.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
});

async function relayWith(options: Parameters<typeof startRelay>[0] = {}): Promise<TestRelay> {
  const relay = await startRelay(options);
  relays.push(relay);
  return relay;
}
async function synced(url: string): Promise<ProtocolClient> {
  const client = await ProtocolClient.synced(url);
  clients.push(client);
  return client;
}
async function del(relay: TestRelay, name: string): Promise<number> {
  return (await fetch(`${relay.httpUrl}/v1/docs/${encodeURIComponent(name)}`, { method: 'DELETE' })).status;
}

/** A second client of `name` and `c` see each other's edits: they share one copy. */
async function oneCopy(relay: TestRelay, name: string, c: ProtocolClient): Promise<void> {
  await c.waitForAck(c.type('<c>'));
  const other = await synced(relay.docUrl(name));
  expect(other.text).toContain('<c>');
  await other.waitForAck(other.type('<other>'));
  await c.waitFor(() => c.text.includes('<other>'), 'the other client\'s edit');
}

it("a server document open across a delete, closed afterwards, leaves the new incarnation's copy held by its client", async () => {
  const relay = await relayWith({ idleTimeoutMs: 50 });
  const w = await synced(relay.docUrl('d'));
  await w.waitForAck(w.type('old'));
  const sd = await relay.relay.openDocument('d');
  await w.close();
  expect(await del(relay, 'd')).toBe(200);
  const c = await synced(relay.docUrl('d'));
  expect(relay.relay.registry.holders('d')).toBe(1);
  await sd.close();
  expect(relay.relay.registry.holders('d')).toBe(1);
  await oneCopy(relay, 'd', c);
});

it("a PATCH whose append waits across a delete leaves the new incarnation's copy held by its client", async () => {
  const gated = new GatedAppendStore(new MemoryDocStore());
  const relay = await relayWith({ storage: gated, idleTimeoutMs: 50 });
  const w = await synced(relay.docUrl('p'));
  await w.waitForAck(w.type('old'));
  gated.hold();
  const patch = fetch(`${relay.httpUrl}/v1/docs/p`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ edits: [{ text: 't', append: '!' }] }) });
  await gated.whenHeld();
  await w.close();
  expect(await del(relay, 'p')).toBe(200);
  const c = await synced(relay.docUrl('p'));
  expect(relay.relay.registry.holders('p')).toBe(1);
  gated.release();
  await (await patch).text();
  expect(relay.relay.registry.holders('p')).toBe(1);
  await oneCopy(relay, 'p', c);
});

it("sessions closed by the delete do not release the new incarnation's copy", async () => {
  const relay = await relayWith({ idleTimeoutMs: 50 });
  const olds = await Promise.all([1, 2, 3].map(() => synced(relay.docUrl('q'))));
  await olds[0]!.waitForAck(olds[0]!.type('old'));
  const closing = olds.map((o) => o.waitClosed());
  expect(await del(relay, 'q')).toBe(200);
  const c = await synced(relay.docUrl('q'));
  await Promise.all(closing);
  expect(relay.relay.registry.holders('q')).toBe(1);
  await oneCopy(relay, 'q', c);
});

it("a server document open across a delete is told: its flush rejects with 'document-deleted' and none of its edits is stored", async () => {
  const relay = await relayWith();
  const w = await synced(relay.docUrl('e'));
  await w.waitForAck(w.type('old'));
  const sd = await relay.relay.openDocument('e');
  expect(await del(relay, 'e')).toBe(200);
  await expect(sd.flush()).rejects.toMatchObject({ code: 'document-deleted' });
  sd.doc.getText('t').insert(0, 'zombie');
  await expect(sd.flush()).rejects.toMatchObject({ code: 'document-deleted' });
  await sd.close();
  expect(await (await fetch(`${relay.httpUrl}/v1/docs/e`)).json()).toEqual({});
});
