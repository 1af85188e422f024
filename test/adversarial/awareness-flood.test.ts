/**
 * Issue 11, attack 4: awareness was unbounded and unowned. 6 messages of 10,000 client ids x
 * 1.4 KB took the relay from 89 MB to 712 MB and sent 85 MB to every client and newcomer; a
 * read-only user could set or remove the presence of any other client id.
 *
 * Now a connection may set only the ids it introduced (removals of others' are ignored), a
 * state is capped in bytes, and the states are capped per connection (over it: 4413) and per
 * document (over it: not applied, connection kept). Each test runs against a real relay
 * process with auth; the attacker has a read-only token.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { CloseCode } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { metricValue } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'adversarial-awareness-secret-0123456789';
const MiB = 1024 * 1024;
const DOC = 'room';
const BYSTANDER_MAX_MS = 1_000;

function token(sub: string, permission: 'read' | 'write'): Promise<string> {
  return mintToken(SECRET, { sub, docs: { [DOC]: permission, bystander: 'write' } });
}

/** A y-protocols awareness update setting `states` (clientID -> state) at `clock`. */
function awarenessUpdate(states: Map<number, unknown>, clock = 1): Uint8Array {
  const aw = new awarenessProtocol.Awareness(new Y.Doc());
  for (const [id, state] of states) {
    if (state === null) aw.states.delete(id);
    else aw.states.set(id, state as Record<string, unknown>);
    aw.meta.set(id, { clock, lastUpdated: Date.now() });
  }
  const update = awarenessProtocol.encodeAwarenessUpdate(aw, [...states.keys()]);
  aw.destroy();
  return update;
}

/** Applies every awareness message a client received to a fresh Awareness: what it sees. */
function seenBy(c: ProtocolClient): Map<number, Record<string, unknown>> {
  const aw = new awarenessProtocol.Awareness(new Y.Doc());
  aw.setLocalState(null);
  for (const m of c.received) if (m.type === 'awareness') awarenessProtocol.applyAwarenessUpdate(aw, m.update, 'relay');
  const states = new Map(aw.getStates());
  aw.destroy();
  return states;
}

/** Resolves once the relay processed everything `c` sent before (it answers in order). */
async function roundTrip(c: ProtocolClient, id: number): Promise<void> {
  c.sendMessage({ type: 'ping', id });
  await c.waitFor(() => c.received.some((m) => m.type === 'pong' && m.id === id) || undefined, `pong ${id}`);
}

async function startRelay(args: string[] = []) {
  const relay = await startAttackedRelay(['--auth-secret', SECRET, ...args]);
  const urlAs = async (sub: string, permission: 'read' | 'write', doc = DOC) => `${relay.url}/${doc}?token=${await token(sub, permission)}`;
  return Object.assign(relay, { urlAs });
}

/** Seeds the document with text and returns it, acknowledged. */
async function seed(url: string): Promise<{ writer: ProtocolClient; text: string }> {
  const writer = await ProtocolClient.synced(url);
  await writer.waitForAck(writer.type('stored before the attack'));
  return { writer, text: writer.text };
}

async function servedText(url: string): Promise<string> {
  const c = await ProtocolClient.synced(url);
  const text = c.text;
  await c.close();
  return text;
}

describe('issue 11 attack 4: awareness is bounded and owned', () => {
  it(`issue-11 attack 4: 6 messages of ${heavy ? 10_000 : 2_000} client ids x 1.4 KB from a read-only client close it 4413 at once; RSS bounded, nothing reaches others, bystander served`, async () => {
    await using relay = await startRelay();
    const { writer, text } = await seed(await relay.urlAs('alice', 'write'));
    const observer = await ProtocolClient.synced(await relay.urlAs('olga', 'read'));
    const bystander = await startBystander(relay.url, `bystander?token=${await token('bea', 'write')}`);
    const rssBefore = await relay.rss();

    const IDS = heavy ? 10_000 : 2_000;
    const attacker = await ProtocolClient.synced(await relay.urlAs('mallory', 'read'));
    const messages: Uint8Array[] = [];
    for (let m = 0; m < 6; m++) {
      const states = new Map<number, unknown>();
      for (let i = 0; i < IDS; i++) states.set(5_000_000 + m * IDS + i, { pad: 'm'.repeat(1400) });
      messages.push(awarenessUpdate(states));
    }
    for (const update of messages) attacker.sendMessage({ type: 'awareness', update });
    const info = await attacker.waitClosed(30_000);
    const rssAfter = await relay.rss();
    const rtts = await bystander.stop();
    await roundTrip(observer, 1);

    const growth = rssAfter - rssBefore;
    console.log(`awareness flood: 6 x ${IDS} ids x 1.4 KB (${((6 * IDS * 1400) / MiB).toFixed(0)} MiB), RSS growth ${(growth / MiB).toFixed(1)} MiB, bystander worst ${worst(rtts).toFixed(0)} ms`);
    expect(info.code).toBe(CloseCode.LimitExceeded);
    expect(info.reason).toMatch(/^limit-exceeded: --max-awareness-states-per-connection/);
    // Before: every state was kept and sent to all (85 MB per client in the issue).
    expect(seenBy(observer).size, 'states the observer got').toBe(0);
    expect(observer.received.filter((m) => m.type === 'awareness').reduce((n, m) => n + m.update.byteLength, 0)).toBe(0);
    expect(growth).toBeLessThan(64 * MiB);
    expect(worst(rtts)).toBeLessThan(BYSTANDER_MAX_MS);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-awareness-states-per-connection' })).toBeGreaterThanOrEqual(1);
    const newcomer = await ProtocolClient.synced(await relay.urlAs('nina', 'read'));
    newcomer.sendMessage({ type: 'query-awareness' });
    await roundTrip(newcomer, 2);
    expect(seenBy(newcomer).size).toBe(0);
    expect(await servedText(await relay.urlAs('carl', 'read'))).toBe(text);
    await Promise.all([writer.close(), observer.close(), newcomer.close()]);
  });

  it('issue-11 attack 4: many connections within their own bound fill the document only up to --max-awareness-states-per-doc; they are kept, others get at most the bound', async () => {
    const PER_DOC = 40;
    const PER_CONN = 16;
    await using relay = await startRelay(['--max-awareness-states-per-doc', String(PER_DOC)]);
    const { writer, text } = await seed(await relay.urlAs('alice', 'write'));
    // Alice's presence is there first: a full document does not evict it.
    writer.sendMessage({ type: 'awareness', update: awarenessUpdate(new Map([[writer.doc.clientID, { name: 'alice' }]])) });
    await roundTrip(writer, 1);
    const observer = await ProtocolClient.synced(await relay.urlAs('olga', 'read'));
    const attackers: ProtocolClient[] = [];
    for (let a = 0; a < 5; a++) {
      const c = await ProtocolClient.synced(await relay.urlAs(`mallory-${a}`, 'read'));
      const states = new Map<number, unknown>();
      for (let i = 0; i < PER_CONN; i++) states.set(7_000_000 + a * 100 + i, { pad: 'm'.repeat(1400) });
      c.sendMessage({ type: 'awareness', update: awarenessUpdate(states) });
      await roundTrip(c, 10 + a);
      attackers.push(c);
    }
    await roundTrip(observer, 2);
    const seen = seenBy(observer);
    expect(seen.size).toBeLessThanOrEqual(PER_DOC);
    expect(seen.get(writer.doc.clientID)).toEqual({ name: 'alice' });
    for (const c of attackers) expect(c.closeInfo, 'a full document is not the newcomer’s fault').toBeNull();
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-awareness-states-per-doc' })).toBeGreaterThanOrEqual(1);
    const newcomer = await ProtocolClient.synced(await relay.urlAs('nina', 'read'));
    newcomer.sendMessage({ type: 'query-awareness' });
    await roundTrip(newcomer, 3);
    expect(seenBy(newcomer).size).toBeLessThanOrEqual(PER_DOC);
    expect(await servedText(await relay.urlAs('carl', 'read'))).toBe(text);
    await Promise.all([writer, observer, newcomer, ...attackers].map((c) => c.close()));
  });

  it('issue-11 attack 4: an awareness state over --max-awareness-state-bytes closes its sender 4413 and reaches nobody', async () => {
    await using relay = await startRelay();
    const observer = await ProtocolClient.synced(await relay.urlAs('olga', 'read'));
    const attacker = await ProtocolClient.synced(await relay.urlAs('mallory', 'read'));
    attacker.sendMessage({ type: 'awareness', update: awarenessUpdate(new Map([[attacker.doc.clientID, { pad: 'm'.repeat(20_000) }]])) });
    const info = await attacker.waitClosed();
    expect(info.code).toBe(CloseCode.LimitExceeded);
    expect(info.reason).toMatch(/^limit-exceeded: --max-awareness-state-bytes/);
    await roundTrip(observer, 1);
    expect(seenBy(observer).size).toBe(0);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-awareness-state-bytes' })).toBe(1);
    await observer.close();
  });

  it("issue-11 attack 4: a read-only user cannot set or remove another client id's presence", async () => {
    await using relay = await startRelay();
    const alice = await ProtocolClient.synced(await relay.urlAs('alice', 'write'));
    const aliceId = alice.doc.clientID;
    alice.sendMessage({ type: 'awareness', update: awarenessUpdate(new Map([[aliceId, { name: 'alice' }]]), 1) });
    await roundTrip(alice, 1);
    const observer = await ProtocolClient.synced(await relay.urlAs('olga', 'read'));
    await roundTrip(observer, 2);
    expect(seenBy(observer).get(aliceId)).toEqual({ name: 'alice' });

    const mallory = await ProtocolClient.synced(await relay.urlAs('mallory', 'read'));
    // Overwrite with a newer clock, then remove: both would win under y-protocols' rules.
    mallory.sendMessage({ type: 'awareness', update: awarenessUpdate(new Map([[aliceId, { name: 'mallory' }]]), 100) });
    mallory.sendMessage({ type: 'awareness', update: awarenessUpdate(new Map([[aliceId, null]]), 101) });
    // Her own presence is fine.
    mallory.sendMessage({ type: 'awareness', update: awarenessUpdate(new Map([[mallory.doc.clientID, { name: 'mallory' }]]), 1) });
    await roundTrip(mallory, 3);
    await roundTrip(observer, 4);

    expect(mallory.closeInfo).toBeNull();
    const seen = seenBy(observer);
    expect(seen.get(aliceId), "alice's state survives").toEqual({ name: 'alice' });
    expect(seen.get(mallory.doc.clientID)).toEqual({ name: 'mallory' });
    const newcomer = await ProtocolClient.synced(await relay.urlAs('nina', 'read'));
    newcomer.sendMessage({ type: 'query-awareness' });
    await roundTrip(newcomer, 5);
    expect(seenBy(newcomer).get(aliceId)).toEqual({ name: 'alice' });

    // Her owner still may remove it, and once alice leaves the id is gone for everyone.
    alice.sendMessage({ type: 'awareness', update: awarenessUpdate(new Map([[aliceId, null]]), 2) });
    await roundTrip(alice, 6);
    await roundTrip(observer, 7);
    expect(seenBy(observer).has(aliceId)).toBe(false);
    await Promise.all([alice, observer, mallory, newcomer].map((c) => c.close()));
  });
});
