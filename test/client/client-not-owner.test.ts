/**
 * The client under the relay's client id ownership (issue 11): a 4403 `not-owner` refusal is a
 * typed NotOwnerError, retried with backoff (not a tight loop); the edits stay pending.
 */
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import { createClient, MemoryStorage, NotOwnerError, type CapsyncClient, type CapsyncError, type DocHandle } from '@capsync/client';
import { startAttackedRelay } from '../support/attack.js';
import { TEST_CLIENT_DEFAULTS, until, whenStatus } from '../support/client-fixture.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'client-not-owner-secret-0123456789abcdef';
const DOC = 'owned';

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

describe('client id ownership: the client stops on not-owner', () => {
  it("mallory writes under alice's client id first: alice gets a NotOwnerError per refused attempt, retries with backoff, and keeps her text pending", async () => {
    const relay = await RestartableRelay.start(['--auth-secret', SECRET]);
    onTestFinished(() => relay.dispose());
    const alice = await open(relay.url, 'alice', new MemoryStorage());
    await whenStatus(alice, 'synced');
    const errors: CapsyncError[] = [];
    alice.on('error', (e) => errors.push(e));
    let opens = 0;
    alice.on('status', (s) => {
      if (s === 'syncing') opens++;
    });
    const squatted = alice.doc.clientID;
    // Alice types offline; the relay restarts (it held alice's declared id in memory only), and
    // mallory, who saw alice's id in her presence, writes under it.
    alice.disconnect();
    alice.doc.getText('t').insert(0, 'hello from alice');
    await relay.stop();
    await relay.start();
    await writeUnder(relay.url, squatted, 'x');

    alice.connect();
    await until(alice, 'error', () => errors.length > 0, 'the refusal');
    expect(errors[0]).toBeInstanceOf(NotOwnerError);
    expect(errors[0]!.code).toBe('not-owner');
    // Retried with backoff (in a mesh it heals once the relay has the content), refused each time.
    await until(alice, 'error', () => errors.length > 1, 'a retry refused again', 10_000);
    expect(errors.every((e) => e.code === 'not-owner')).toBe(true);
    expect(opens).toBeGreaterThan(1);
    expect(alice.status).not.toBe('synced');
    // Nothing typed is dropped: the text is local and still pending.
    expect(alice.doc.getText('t').toString()).toContain('hello from alice');
    expect(alice.pending).toBeGreaterThan(0);
    // The relay holds mallory's text only.
    const bob = await open(relay.url, 'bob');
    await bob.whenSynced({ timeoutMs: 10_000 });
    expect(bob.doc.getText('t').toString()).toBe('x');
  });

  it("while the relay holds alice's declared client id, mallory's write under it is refused and alice's offline text syncs", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const alice = await open(relay.url, 'alice', new MemoryStorage());
    await whenStatus(alice, 'synced');
    const squatted = alice.doc.clientID;
    alice.disconnect();
    alice.doc.getText('t').insert(0, 'hello from alice');
    const mallory = await ProtocolClient.synced(`${relay.url}/${DOC}`, { headers: { authorization: `Bearer ${await mintToken(SECRET, { sub: 'mallory' })}` } });
    protocolClients.push(mallory);
    mallory.doc.clientID = squatted;
    mallory.doc.getText('t').insert(0, 'x');
    expect((await mallory.waitClosed()).reason).toMatch(/^not-owner: /);
    alice.connect();
    await alice.flush({ timeoutMs: 10_000 });
    const bob = await open(relay.url, 'bob');
    await bob.whenSynced({ timeoutMs: 10_000 });
    expect(bob.doc.getText('t').toString()).toBe('hello from alice');
  });
});
