/**
 * The client under the relay's client id ownership (issue 11): a 4403 `not-owner` refusal
 * re-keys the document handle instead of stopping it, and re-keying is bounded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { createClient, MemoryStorage, type CapsyncClient, type CapsyncError, type DocHandle, type RekeyInfo } from '@capsync/client';
import { startAttackedRelay } from '../support/attack.js';
import { TEST_CLIENT_DEFAULTS, until, whenStatus } from '../support/client-fixture.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';
import { withTimeout } from '../support/wait.js';

const SECRET = 'client-id-rekey-secret-0123456789abcdef';
const DOC = 'rekey';

const clients: CapsyncClient[] = [];
const protocolClients: ProtocolClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await Promise.all(protocolClients.splice(0).map((c) => c.close().catch(() => {})));
});

async function open(url: string, sub: string, storage: 'memory' | MemoryStorage = 'memory'): Promise<DocHandle> {
  const client = createClient({
    url,
    storage,
    WebSocket: WebSocket as never,
    ...TEST_CLIENT_DEFAULTS,
    token: () => mintToken(SECRET, { sub }),
  });
  clients.push(client);
  return client.open(DOC);
}

/** Mallory, on her own connection, inserts `text` at the start of "t" under `clientId`. */
async function writeUnder(url: string, clientId: number, text: string): Promise<void> {
  const mallory = await ProtocolClient.synced(`${url}/${DOC}`, { headers: { authorization: `Bearer ${await mintToken(SECRET, { sub: 'mallory' })}` } });
  protocolClients.push(mallory);
  mallory.doc.clientID = clientId;
  mallory.doc.getText('t').insert(0, text);
  await mallory.waitForAck(mallory.seq);
}

function eventsOf(handle: DocHandle): { rekeys: RekeyInfo[]; errors: CapsyncError[] } {
  const out = { rekeys: [] as RekeyInfo[], errors: [] as CapsyncError[] };
  handle.on('rekey', (info) => out.rekeys.push(info));
  handle.on('error', (e) => out.errors.push(e));
  return out;
}

/** Resolves once the text "t" of `handle` reads `expected` (watching its document's updates). */
function textAt(handle: DocHandle, expected: string, timeoutMs = 10_000): Promise<void> {
  const text = handle.doc.getText('t');
  if (text.toString() === expected) return Promise.resolve();
  return withTimeout(
    new Promise<void>((resolve) => {
      const check = () => {
        if (text.toString() !== expected) return;
        handle.doc.off('afterTransaction', check);
        resolve();
      };
      handle.doc.on('afterTransaction', check);
    }),
    timeoutMs,
    `"${expected}" in ${handle.name} (has "${text.toString()}")`,
  );
}

/** The client ids of the structs under which `doc` holds visible text of "t". */
function authorsOf(doc: Y.Doc): Set<number> {
  const authors = new Set<number>();
  for (let item = doc.getText('t')._start; item !== null; item = item.right) if (!item.deleted) authors.add(item.id.client);
  return authors;
}

describe('client id ownership: the client re-keys', () => {
  it("mallory writes under alice's client id first: alice's offline text is re-made under a fresh id and reaches bob", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const device = new MemoryStorage();
    const alice = await open(relay.url, 'alice', device);
    await whenStatus(alice, 'synced');
    const seen = eventsOf(alice);
    const squatted = alice.doc.clientID;
    // Alice types offline; meanwhile mallory (who saw alice's id in her presence) writes under it.
    alice.disconnect();
    const t = alice.doc.getText('t');
    t.insert(0, 'hello from alice');
    t.delete(5, 5); // "hello alice": tombstones under the squatted id too
    await writeUnder(relay.url, squatted, 'x');

    alice.connect();
    await until(alice, 'status', () => alice.pending === 0 && alice.status === 'synced', 'alice durable after the re-key', 10_000);
    expect(seen.rekeys).toHaveLength(1);
    const { from, to } = seen.rekeys[0]!;
    expect(from).toBe(squatted);
    expect(to).not.toBe(squatted);
    expect(alice.doc.clientID).toBe(to);
    expect(alice.awareness.clientID).toBe(to);
    expect(seen.errors).toEqual([]);
    expect(t.toString()).toBe('hello alice');

    // Bob, a fresh replica, gets alice's text from the relay, under the new id; mallory's "x"
    // stood where alice's text was and is deleted with it.
    const bob = await open(relay.url, 'bob');
    await textAt(bob, 'hello alice');
    expect(authorsOf(bob.doc)).toEqual(new Set([to]));

    // New edits go under the new id and sync as usual.
    t.insert(t.length, '!');
    await alice.flush({ timeoutMs: 10_000 });
    await textAt(bob, 'hello alice!');
    expect(alice.status).toBe('synced');

    // Reloaded, the replica still holds the refused id's (deleted) structs: refused once more,
    // re-keyed again (tombstones only), and nothing changes for anyone.
    await clients[0]!.close();
    const reloaded = await open(relay.url, 'alice', device);
    const again = eventsOf(reloaded);
    await until(reloaded, 'status', () => again.rekeys.length === 1 && reloaded.status === 'synced', 'the reloaded replica synced', 10_000);
    expect(again.rekeys[0]!.from).toBe(squatted);
    expect(again.errors).toEqual([]);
    expect(reloaded.doc.getText('t').toString()).toBe('hello alice!');
    await bob.whenSynced({ timeoutMs: 10_000 });
    expect(bob.doc.getText('t').toString()).toBe('hello alice!');
  }, 30_000);

  it("a replica restored from another user's storage: his unsynced edits are re-made under the new user's id", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const device = new MemoryStorage();
    const bob = await open(relay.url, 'bob', device);
    const t = bob.doc.getText('t');
    t.insert(0, 'synced');
    await bob.flush({ timeoutMs: 10_000 });
    bob.disconnect();
    t.insert(6, ' and offline');
    await bob.flush({ durability: 'local' });
    await clients.shift()!.close();

    // Alice signs in on bob's device: the replica holds bob's unsynced edits under bob's id.
    const alice = await open(relay.url, 'alice', device);
    const seen = eventsOf(alice);
    expect(alice.pending).toBeGreaterThan(0);
    await until(alice, 'status', () => alice.pending === 0 && alice.status === 'synced', 'alice durable after the re-key', 10_000);
    expect(seen.rekeys).toHaveLength(1);
    expect(seen.rekeys[0]!.from).not.toBe(alice.doc.clientID); // not her own id: she keeps it
    expect(seen.errors).toEqual([]);
    const carol = await open(relay.url, 'carol');
    await textAt(carol, 'synced and offline');
    expect(authorsOf(carol.doc)).toEqual(new Set([seen.rekeys[0]!.to]));
  }, 30_000);

  it('re-keying is bounded: the fresh id squatted too is a not-owner error and the handle stops connecting', async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const alice = await open(relay.url, 'alice');
    await whenStatus(alice, 'synced');
    const seen = eventsOf(alice);
    alice.disconnect();
    alice.doc.getText('t').insert(0, 'abc');
    await writeUnder(relay.url, alice.doc.clientID, 'x');
    // Mallory gets the new id too (here: straight from the event) before alice reconnects.
    alice.on('rekey', () => alice.disconnect());
    alice.connect();
    await until(alice, 'rekey', () => seen.rekeys.length === 1, 'the first re-key');
    await writeUnder(relay.url, seen.rekeys[0]!.to, 'y');
    alice.connect();
    await until(alice, 'error', () => seen.errors.length > 0, 'the not-owner error');
    expect(seen.errors.map((e) => e.code)).toEqual(['not-owner']);
    expect(seen.rekeys).toHaveLength(1);
    expect(alice.status).toBe('offline');
    // Stopped: no reconnect loop; the text is still in the replica and pending.
    await expect(alice.whenSynced({ timeoutMs: 500 })).rejects.toMatchObject({ code: 'unavailable' });
    expect(seen.errors).toHaveLength(1);
    expect(alice.doc.getText('t').toString()).toBe('abc');
    expect(alice.pending).toBeGreaterThan(0);
  }, 30_000);
});
