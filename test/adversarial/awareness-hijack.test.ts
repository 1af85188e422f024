/**
 * Hostile review of issue 11: an awareness (presence) client id was free for anyone the moment
 * its owner's connection dropped. Mallory took alice's presence id during a network blip, with a
 * high clock; after alice reconnected, her presence was ignored and everyone saw mallory's.
 *
 * Now a freed id is reserved for the identity that owned it (token `sub`, or a capsync client's
 * owner key on an open relay) for the awareness timeout (30 s): alice's reconnect takes it back,
 * everyone else's states and removals for it are ignored meanwhile. Each test: a real relay
 * process, a watcher's view of the document's presence, the attacker's connection left open (its
 * states are ignored, not an error), a bystander served.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { OWNER_KEY_PREFIX, PROTOCOL_VERSION } from '@capsync/core';
import { startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { awarenessStatesSeen, ProtocolClient, type ProtocolClientOptions } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'adversarial-awareness-hijack-secret-0123';

/** Whether `c` was ever sent a state of `id` carrying `note`. */
function everSaw(c: ProtocolClient, id: number, note: string): boolean {
  for (const m of c.received) {
    if (m.type !== 'awareness') continue;
    for (const [clientId, state] of decodedStates(m.update)) if (clientId === id && state?.['note'] === note) return true;
  }
  return false;
}

function decodedStates(update: Uint8Array): [number, Record<string, unknown> | null][] {
  const aw = new awarenessProtocol.Awareness(new Y.Doc());
  aw.setLocalState(null);
  awarenessProtocol.applyAwarenessUpdate(aw, update, 'x');
  return [...(aw.getStates() as Map<number, Record<string, unknown>>)];
}

/** Waits until the relay processed everything `c` sent so far (a ping's pong comes after it). */
async function settled(c: ProtocolClient, id: number): Promise<void> {
  c.sendMessage({ type: 'ping', id });
  await c.waitFor(() => c.received.some((m) => m.type === 'pong' && m.id === id), `pong ${id}`, 10_000);
}

/**
 * The attack: alice sets her presence, her socket drops, mallory sets alice's id at once with a
 * high clock (and removes it), alice reconnects with the same replica and announces herself once.
 */
async function hijackAttempt(url: string, alice: () => Promise<ProtocolClient>, mallory: ProtocolClient, watcher: ProtocolClient): Promise<number> {
  const aliceDoc = new Y.Doc();
  const aw = new awarenessProtocol.Awareness(aliceDoc);
  const id = aliceDoc.clientID;
  aw.setLocalState({ user: 'alice', cursor: 1 });
  const a1 = await alice();
  a1.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(aw, [id]) });
  await watcher.waitFor(() => awarenessStatesSeen(watcher).has(id) || undefined, 'alice visible');
  a1.ws.terminate(); // a network blip
  await watcher.waitFor(() => !awarenessStatesSeen(watcher).has(id) || undefined, 'alice removed');

  const fake = new Y.Doc();
  fake.clientID = id;
  const faw = new awarenessProtocol.Awareness(fake);
  for (let i = 0; i < 50; i++) faw.setLocalState({ user: 'alice', cursor: 999, note: 'mallory speaking', i });
  mallory.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(faw, [id]) });
  await settled(mallory, 1);

  const a2 = await alice();
  aw.setLocalState({ user: 'alice', cursor: 2 });
  a2.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(aw, [id]) });
  await watcher.waitFor(() => awarenessStatesSeen(watcher).get(id)?.['cursor'] === 2 || undefined, "alice's presence after her reconnect", 10_000);

  // Owned by alice again: mallory's states and removals stay ignored.
  for (let i = 0; i < 5; i++) faw.setLocalState({ user: 'alice', cursor: 999, note: 'mallory speaking', i: 100 + i });
  mallory.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(faw, [id]) });
  faw.setLocalState(null);
  mallory.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(faw, [id]) });
  await settled(mallory, 2);
  await settled(watcher, 3);
  expect(everSaw(watcher, id, 'mallory speaking')).toBe(false);
  expect(awarenessStatesSeen(watcher).get(id)).toMatchObject({ user: 'alice', cursor: 2 });
  expect(mallory.closeInfo).toBeNull();
  await a2.close();
  aw.destroy();
  faw.destroy();
  return id;
}

describe('awareness ids cannot be hijacked after a drop', () => {
  it("issue-11 review (awareness hijack): on a relay with auth, mallory cannot take alice's presence id when her socket drops; alice's reconnect (same sub) gets it back", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const as = async (sub: string): Promise<ProtocolClientOptions> => ({ headers: { authorization: `Bearer ${await mintToken(SECRET, { sub })}` } });
    const url = `${relay.url}/presence`;
    const bystander = await startBystander(relay.url, 'bystander', 10_000, await as('carol'));
    const watcher = await ProtocolClient.synced(url, await as('walter'));
    const mallory = await ProtocolClient.synced(url, await as('mallory'));
    await hijackAttempt(url, async () => ProtocolClient.synced(url, await as('alice')), mallory, watcher);
    const rtts = await bystander.stop();
    expect(worst(rtts)).toBeLessThan(1_000);
    await Promise.all([watcher.close(), mallory.close()]);
  }, 60_000);

  it("issue-11 review (awareness hijack): on an open relay, a capsync client's owner key gets its presence id back after a drop; others cannot take it meanwhile", async () => {
    await using relay = await startAttackedRelay();
    const url = `${relay.url}/presence`;
    const ownerKey = randomBytes(24).toString('base64url');
    // A capsync client announces its owner key in its hello (what ProtocolClient's default hello does not).
    const alice = async (): Promise<ProtocolClient> => {
      const c = await ProtocolClient.connect(url, { hello: false });
      c.sendMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: ['ack', 'error', OWNER_KEY_PREFIX + ownerKey] });
      await c.waitSynced();
      return c;
    };
    const watcher = await ProtocolClient.synced(url);
    const mallory = await ProtocolClient.synced(url);
    await hijackAttempt(url, alice, mallory, watcher);
    await Promise.all([watcher.close(), mallory.close()]);
  }, 60_000);
});
