/**
 * Lifecycle of per-document peer links: they come back after the peer closes them, documents
 * held only for peers unload on every relay (and stay unloaded), and a link acknowledges an
 * empty update only once everything the relay applied is committed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EventEmitter as EventEmitterClass, type EventEmitter } from 'node:events';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { CloseCode, MemoryDocStore, closeReasonFor } from '@capsync/core';
import type { PeerLink, RelayDoc } from '@capsync/server';
import { TestDevice } from '../support/client-fixture.js';
import { GatedAppendStore } from '../support/gated-store.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { waitForEvent, withTimeout } from '../support/wait.js';
import { startMesh, whenEndpoint, whenMeshUp, type Mesh } from './mesh-fixture.js';

/** The mesh's shared peer credential (open relays trust only it as a peer, where that is enforced). */
const PEER_TOKEN = 'link-lifecycle-peer-token';

/** Resolves once `check` holds, re-checked on every update of `doc`. */
function whenDoc(doc: Y.Doc, check: () => boolean, what: string, timeoutMs = 10_000): Promise<true> {
  return waitForEvent(doc as unknown as EventEmitter, 'update', () => check() || undefined, what, timeoutMs) as Promise<true>;
}

/** The loaded document `name` of `relay` (it must be loaded). */
async function loaded(relay: TestRelay, name: string): Promise<RelayDoc> {
  const pending = relay.relay.registry.peek(name);
  if (!pending) throw new Error(`${name} is not loaded on ${relay.relay.options.relayId}`);
  return pending;
}

/** Relay-side end of `peerId`'s inbound document link to `doc` (a RelayConnection). */
function inboundFrom(doc: RelayDoc, peerId: string): { close(code: number, reason: string): void; sendUpdate(u: Uint8Array): void; sendAwareness(u: Uint8Array): void } {
  const conn = Array.from(doc.peers).find((p) => p.peerRelayId === peerId && !('endpoint' in p));
  if (!conn) throw new Error(`no inbound link from ${peerId} for ${doc.name}`);
  return conn as unknown as ReturnType<typeof inboundFrom>;
}

/** Resolves once `name` is unloaded on every relay of `relays`, re-checked on each unload. */
async function whenUnloadedEverywhere(relays: TestRelay[], name: string, timeoutMs = 10_000): Promise<void> {
  const check = () => relays.every((r) => r.relay.registry.peek(name) === undefined && r.relay.mesh.linksOf(name).length === 0) || undefined;
  // One waiter re-checked on any relay's unload.
  const anyUnload = new EventEmitterClass();
  const forward = (): boolean => anyUnload.emit('unloaded');
  for (const r of relays) r.relay.registry.on('unloaded', forward);
  try {
    await waitForEvent(anyUnload, 'unloaded', check, `${name} unloaded on every relay`, timeoutMs);
  } finally {
    for (const r of relays) r.relay.registry.off('unloaded', forward);
  }
}

let mesh: Mesh | null = null;
const extra: TestRelay[] = [];
const gates: GatedAppendStore[] = [];
afterEach(async () => {
  // A held store would keep a relay's close waiting for its writes.
  for (const g of gates.splice(0)) g.release();
  await mesh?.close();
  mesh = null;
  await Promise.all(extra.splice(0).map((r) => r.dispose()));
});

describe('peer document links', () => {
  // On the pair's multiplexed socket (a session reopened), and on a socket of its own (`--mux
  // off`: the link's Dialer dials the document path again).
  it.each([
    ['a session on the pair socket', true],
    ['a socket per document (--mux off)', false],
  ])('reopen a link the peer closed (expired credential) while the control link stays up, and keep replicating: %s', async (_, mux) => {
    mesh = await startMesh(2, { peerToken: PEER_TOKEN, mux });
    await whenMeshUp(mesh.relays);
    const [a, b] = mesh.relays as [TestRelay, TestRelay];
    // Bob's relay (r1) loads the document first and dials r0 for it; r0 holds it only for that link.
    const bob = await new TestDevice(b.url, 'memory', 'bob').open('relink');
    bob.handle.doc.getText('t').insert(0, 'one ');
    await bob.handle.flush();
    const link = b.relay.mesh.linksOf('relink')[0] as PeerLink | undefined;
    expect(link).toBeDefined();
    await withTimeout(link!.whenConverged(), 10_000, 'first connection of the link converged');
    expect(a.relay.mesh.linksOf('relink')).toHaveLength(0);
    const aDoc = await loaded(a, 'relink');
    await whenDoc(aDoc.doc, () => aDoc.doc.getText('t').toString() === 'one ', '"one" on r0');

    for (const word of ['two ', 'three ']) {
      // r0 closes the link as it does when the peer's credential expires (4401).
      inboundFrom(aDoc, 'r1').close(CloseCode.Unauthorized, closeReasonFor('unauthorized', 'token expired'));
      expect(b.relay.mesh.endpoints[0]!.up).toBe(true);
      bob.handle.doc.getText('t').insert(0, word);
      await bob.handle.flush();
      // Only the reopened link carries it: r0 does not link the document itself (it holds it
      // only for r1), and the control link never went down.
      await whenDoc(aDoc.doc, () => aDoc.doc.getText('t').toString().startsWith(word), `"${word.trim()}" on r0 after the peer closed the link`);
      expect(b.relay.mesh.linksOf('relink')).toEqual([link]);
      expect(link!.connected).toBe(true);
      expect(a.relay.mesh.linksOf('relink')).toHaveLength(0);
    }

    // And the other way, over the reopened link.
    const alice = await new TestDevice(a.url, 'memory', 'alice').open('relink');
    alice.handle.doc.getMap('m').set('k', 'from r0');
    await whenDoc(bob.handle.doc, () => bob.handle.doc.getMap('m').get('k') === 'from r0', 'r0 → r1 after reconnects');
    await alice.close();
    await bob.close();
  });

  it('let a document idle out on both relays once its last client left, and it stays unloaded', async () => {
    mesh = await startMesh(2, { peerToken: PEER_TOKEN, idleTimeoutMs: 200 });
    await whenMeshUp(mesh.relays);
    const relays = mesh.relays as [TestRelay, TestRelay];
    const [a, b] = relays;
    const loads = new Map<string, number>();
    for (const r of relays) r.relay.registry.on('loaded', (name) => name === 'pp' && loads.set(r.relay.options.relayId, (loads.get(r.relay.options.relayId) ?? 0) + 1));

    const alice = await new TestDevice(a.url, 'memory', 'alice').open('pp');
    alice.handle.doc.getText('t').insert(0, 'x');
    await alice.handle.flush();
    const bLink = a.relay.mesh.linksOf('pp')[0];
    expect(bLink).toBeDefined();
    await withTimeout(bLink!.whenConverged(), 10_000, 'link to r1 converged');
    const bDoc = await loaded(b, 'pp');
    await whenDoc(bDoc.doc, () => bDoc.doc.getText('t').toString() === 'x', '"x" on r1');
    await alice.close();

    // Without a client, r0 unloads; r1, which held it only for r0's link, must not link it back
    // (that reloads it on r0, and so on forever): both end up unloaded.
    await whenUnloadedEverywhere(relays, 'pp');
    const settled = new Map(loads);
    expect(settled.get('r0')).toBe(1);
    expect(settled.get('r1')).toBe(1);

    // Let time pass on the same clocks: another document's whole idle cycle on both relays
    // (a bounce of 'pp' reloads it within one idle timeout).
    for (let i = 0; i < 2; i++) {
      const carol = await new TestDevice(a.url, 'memory', `carol${i}`).open('clock');
      carol.handle.doc.getText('t').insert(0, 'tick');
      await carol.handle.flush();
      await withTimeout(a.relay.mesh.linksOf('clock')[0]!.whenConverged(), 10_000, 'clock linked');
      await carol.close();
      await whenUnloadedEverywhere(relays, 'clock');
    }
    expect(loads).toEqual(settled);
    for (const r of relays) {
      expect(r.relay.registry.peek('pp')).toBeUndefined();
      expect(r.relay.mesh.linksOf('pp')).toHaveLength(0);
    }

    // The data survived on both.
    const bob = await new TestDevice(b.url, 'memory', 'bob').open('pp');
    await whenDoc(bob.handle.doc, () => bob.handle.doc.getText('t').toString() === 'x', '"x" reloaded on r1');
    await bob.close();
  });

  it('acknowledge an empty update only once every write the relay applied is committed', async () => {
    const store = new GatedAppendStore(new MemoryDocStore());
    gates.push(store);
    const a = await startRelay({ relayId: 'r0', peerToken: PEER_TOKEN, meshSize: 2 });
    extra.push(a);
    const b = await startRelay({ relayId: 'r1', peerToken: PEER_TOKEN, storage: store, peers: [a.url], meshSize: 2 });
    extra.push(b);
    await whenEndpoint(b.relay.mesh.endpoints[0]!);

    const bob = await new TestDevice(b.url, 'memory', 'bob').open('barrier');
    bob.handle.doc.getText('t').insert(0, 'base ');
    await bob.handle.flush();
    const link = b.relay.mesh.linksOf('barrier')[0]!;
    await withTimeout(link.whenConverged(), 10_000, 'link converged');
    const aDoc = await loaded(a, 'barrier');
    const bDoc = await loaded(b, 'barrier');
    await whenDoc(aDoc.doc, () => aDoc.doc.getText('t').toString() === 'base ', '"base" on r0');

    // r1 applies a client's change it cannot commit yet, and forwards it to r0.
    store.hold();
    bob.handle.doc.getText('t').insert(0, 'held ');
    await whenDoc(aDoc.doc, () => aDoc.doc.getText('t').toString() === 'held base ', '"held" on r0');
    const heldAt = aDoc.replication.applied;
    expect(aDoc.replication.peerHolds('r1', heldAt)).toBe(false);

    // r0 asks r1 for an ack with an empty update (as quorum waits do), then sends presence
    // on the same link, so r1 has handled the empty update once the presence shows up there.
    const inbound = inboundFrom(aDoc, 'r1');
    inbound.sendUpdate(new Uint8Array([0, 0]));
    const presence = new awarenessProtocol.Awareness(new Y.Doc());
    presence.setLocalState({ user: 'probe' });
    inbound.sendAwareness(awarenessProtocol.encodeAwarenessUpdate(presence, [presence.clientID]));
    await waitForEvent(bDoc.awareness.awareness as unknown as EventEmitter, 'change', () => bDoc.awareness.awareness.getStates().has(presence.clientID) || undefined, 'probe presence on r1');
    // Anything r1 sends r0 from now on travels behind an ack it sent for the empty update.
    bob.handle.doc.getText('t').insert(0, 'later ');
    await whenDoc(aDoc.doc, () => aDoc.doc.getText('t').toString().startsWith('later '), '"later" on r0');
    // r1 has not committed "held": its ack must not have said so.
    expect(aDoc.replication.peerHolds('r1', heldAt)).toBe(false);

    store.release();
    await withTimeout(new Promise<void>((resolve) => aDoc.replication.whenQuorum(heldAt, resolve)), 10_000, 'r1 acknowledges "held" once committed');
    expect(aDoc.replication.peerHolds('r1', heldAt)).toBe(true);
    presence.destroy();
    await bob.handle.flush();
    await bob.close();
  });
});
