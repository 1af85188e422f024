/**
 * Server-side edits (issue 14): `relay.openDocument(name)` gives a backend job a live replica of
 * a document without a WebSocket; its edits are validated, committed, acknowledged and sent to
 * every client like a client's, and what clients write appears in it.
 */
import { afterEach, expect, it } from 'vitest';
import * as Y from 'yjs';
import { connectAs } from '../support/client-ids.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, tempDir, type TestRelay } from '../support/relay-fixture.js';
import { withTimeout } from '../support/wait.js';

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
});

function whenText(doc: Y.Doc, expected: string): Promise<void> {
  const text = doc.getText('t');
  return withTimeout(
    new Promise<void>((resolve) => {
      const check = () => text.toString() === expected && (doc.off('update', check), resolve());
      doc.on('update', check);
      check();
    }),
    10_000,
    `text "${expected}"`,
  );
}

/** The text of "t" as the relay's store holds it. */
async function storedText(relay: TestRelay, name: string): Promise<string> {
  const stored = await relay.relay.store.load(name);
  const copy = new Y.Doc();
  for (const u of stored.updates) Y.applyUpdate(copy, u);
  return copy.getText('t').toString();
}

it("writes into a live document like a client (committed, sent to every client) and sees the clients' edits", async () => {
  const relay = await startRelay({});
  relays.push(relay);
  const client = await ProtocolClient.synced(relay.docUrl('notes'));
  clients.push(client);
  await client.waitForAck(client.type('typed;'));

  const server = await relay.openDocument('notes');
  expect(server.doc.getText('t').toString()).toBe('typed;');
  server.doc.getText('t').insert(0, 'indexed;');
  await server.flush();
  expect(await storedText(relay, 'notes')).toBe('indexed;typed;');
  await client.waitForText('indexed;typed;');

  client.type('more;');
  await whenText(server.doc, 'indexed;typed;more;');
  await server.close();
  await server.close(); // twice: a no-op
  // Released: only the client holds the document now.
  expect(relay.relay.registry.holders('notes')).toBe(1);
});

it('writes under its identity on a relay with auth: its client ids are its own, and a refused edit rejects flush', async () => {
  const secret = 'server-document-secret-0123456789';
  const relay = await startRelay({ authSecret: secret });
  relays.push(relay);
  const server = await relay.openDocument('owned', { identity: 'indexer' });
  server.doc.getText('t').insert(0, 'by the indexer;');
  await server.flush();

  // Alice may not write under the indexer's client id.
  const alice = await connectAs(relay.docUrl('owned'), secret, 'alice');
  clients.push(alice);
  expect(alice.text).toBe('by the indexer;');
  const forger = new Y.Doc();
  Y.applyUpdate(forger, Y.encodeStateAsUpdate(alice.doc));
  forger.clientID = server.doc.clientID;
  let update: Uint8Array | null = null;
  forger.on('update', (u: Uint8Array) => (update = u));
  forger.getText('t').insert(0, 'forged;');
  alice.sendMessage({ type: 'update', update: update! });
  expect((await alice.waitClosed()).reason).toMatch(/^not-owner/);

  // The server document writing under alice's id (a replica that took her client id) is refused too.
  const bob = await connectAs(relay.docUrl('owned'), secret, 'bob');
  clients.push(bob);
  await bob.waitForAck(bob.type('bob;'));
  const second = await relay.openDocument('owned', { identity: 'indexer' });
  await whenText(second.doc, 'by the indexer;bob;');
  second.doc.clientID = bob.doc.clientID;
  second.doc.getText('t').insert(0, 'as bob;');
  await expect(second.flush()).rejects.toMatchObject({ code: 'not-owner' });
  await second.close();
  await server.close();
  expect(await storedText(relay, 'owned')).toBe('by the indexer;bob;');
});

it('refuses an invalid name, and opening while the relay closes', async () => {
  const relay = await startRelay({});
  relays.push(relay);
  await expect(relay.openDocument('.capsync/locks')).rejects.toMatchObject({ code: 'invalid-doc-name' });
  const closing = relay.close();
  await expect(relay.openDocument('late')).rejects.toMatchObject({ code: 'shutting-down' });
  await closing;
});

it('regression: the relay close closes open server documents: their edits committed, a later flush refused (shutting-down), an open under way refused', async () => {
  const { dir, remove } = tempDir();
  try {
    const relay = await startRelay({ dataDir: dir });
    const notes = await relay.openDocument('notes');
    notes.doc.getText('t').insert(0, 'edited, never flushed');
    const client = await ProtocolClient.synced(relay.docUrl('notes'));
    clients.push(client);
    await client.waitForText('edited, never flushed');
    const other = await relay.openDocument('other');
    other.doc.getText('t').insert(0, 'flushed as the relay closes');
    const flushing = other.flush(); // waiting when the close begins: resolves, committed
    // Began before the close, loads during it: refused, and its document released.
    const opening = expect(relay.openDocument('opened-while-closing')).rejects.toMatchObject({ code: 'shutting-down' });
    await withTimeout(relay.close(), 10_000, 'the relay close');
    await opening;
    await flushing;
    await expect(notes.flush()).rejects.toMatchObject({ code: 'shutting-down' });
    await notes.close(); // closing again is a no-op

    const reopened = await startRelay({ dataDir: dir });
    relays.push(reopened);
    expect(await storedText(reopened, 'notes')).toBe('edited, never flushed');
    expect(await storedText(reopened, 'other')).toBe('flushed as the relay closes');
  } finally {
    remove();
  }
});
