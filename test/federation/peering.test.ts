import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { TestDevice } from '../support/client-fixture.js';
import { waitForEvent } from '../support/wait.js';
import { cut, startMesh, whenEndpoint, whenMeshUp, type Mesh } from './mesh-fixture.js';
import type { EventEmitter } from 'node:events';

/** Resolves once `check` holds, re-checked on every update of `doc`. */
function whenDoc(doc: Y.Doc, check: () => boolean, what: string, timeoutMs = 10_000): Promise<true> {
  return waitForEvent(doc as unknown as EventEmitter, 'update', () => check() || undefined, what, timeoutMs) as Promise<true>;
}

async function metric(httpUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum += Number(line.split(' ').at(-1));
  return sum;
}

let mesh: Mesh | null = null;
afterEach(async () => {
  await mesh?.close();
  mesh = null;
});

describe('relay mesh', () => {
  it('syncs a document between clients of two relays, awareness included', async () => {
    mesh = await startMesh(2);
    await whenMeshUp(mesh.relays);
    const [a, b] = mesh.relays as [NonNullable<Mesh['relays'][0]>, NonNullable<Mesh['relays'][0]>];
    const alice = await new TestDevice(a.url, 'memory', 'alice').open('shared');
    const bob = await new TestDevice(b.url, 'memory', 'bob').open('shared');
    alice.handle.doc.getText('t').insert(0, 'from a ');
    await whenDoc(bob.handle.doc, () => bob.handle.doc.getText('t').toString().includes('from a'), 'a → b');
    bob.handle.doc.getMap('m').set('k', 'from b');
    await whenDoc(alice.handle.doc, () => alice.handle.doc.getMap('m').get('k') === 'from b', 'b → a');
    alice.handle.awareness.setLocalStateField('user', 'alice');
    await waitForEvent(
      bob.handle.awareness as unknown as EventEmitter,
      'change',
      () => (bob.handle.awareness.getStates().get(alice.handle.doc.clientID) as { user?: string } | undefined)?.user === 'alice' || undefined,
      'alice presence on relay b',
    );
    await alice.handle.flush();
    await bob.handle.flush();
    // One document link between the pair, not one each way.
    expect(a.relay.mesh.linksOf('shared').length + b.relay.mesh.linksOf('shared').length).toBe(1);
    await alice.close();
    await bob.close();
  });

  it('keeps serving both sides through a partition and sends only the difference on heal', async () => {
    mesh = await startMesh(2);
    await whenMeshUp(mesh.relays);
    const [a, b] = mesh.relays as [NonNullable<Mesh['relays'][0]>, NonNullable<Mesh['relays'][0]>];
    const link = { setMode: (m: "reset" | "pass") => cut(mesh!, 0, 1, m) };
    const alice = await new TestDevice(a.url, 'memory', 'alice').open('doc');
    const bob = await new TestDevice(b.url, 'memory', 'bob').open('doc');
    // A large shared history first.
    const big = 'x'.repeat(200_000);
    alice.handle.doc.getText('t').insert(0, big);
    await whenDoc(bob.handle.doc, () => bob.handle.doc.getText('t').length === big.length, 'history replicated', 20_000);
    await alice.handle.flush();
    await bob.handle.flush();

    link.setMode('reset');
    await Promise.all([whenEndpoint(b.relay.mesh.endpoints[0]!, false)]);
    // Both sides accept and store writes while cut off.
    alice.handle.doc.getMap('m').set('a', 1);
    bob.handle.doc.getMap('m').set('b', 2);
    await alice.handle.flush({ timeoutMs: 5000 });
    await bob.handle.flush({ timeoutMs: 5000 });
    expect(alice.handle.doc.getMap('m').get('b')).toBeUndefined();

    const peerBytes = async () => {
      let sum = 0;
      for (const r of [a, b]) sum += (await metric(r.httpUrl, 'capsync_peer_bytes_out_total')) + (await metric(r.httpUrl, 'capsync_peer_bytes_in_total'));
      return sum;
    };
    const before = await peerBytes();
    link.setMode('pass');
    await whenDoc(alice.handle.doc, () => alice.handle.doc.getMap('m').get('b') === 2, 'b → a after heal');
    await whenDoc(bob.handle.doc, () => bob.handle.doc.getMap('m').get('a') === 1, 'a → b after heal');
    // Both relays may have reopened a link for the pair after the heal; the one opened by the
    // smaller relay id stays once both have connected. Wait for every link to finish its round.
    const links = [...a.relay.mesh.linksOf('doc'), ...b.relay.mesh.linksOf('doc')];
    expect(links.length).toBeGreaterThanOrEqual(1);
    await Promise.all(links.map((l) => l.whenConverged()));
    const after = await peerBytes();
    // The heal exchanged state vectors and two small diffs, not the 200 kB history.
    expect(after - before).toBeLessThan(2_000);
    // Partition events: each relay saw its peer go up, then down; at least one saw it come back.
    expect((await metric(a.httpUrl, 'capsync_peer_link_changes_total')) + (await metric(b.httpUrl, 'capsync_peer_link_changes_total'))).toBeGreaterThanOrEqual(5);
    expect(Y.encodeStateVector(a.relay.registry.peek('doc') ? (await a.relay.registry.peek('doc')!).doc : new Y.Doc())).toEqual(
      Y.encodeStateVector((await b.relay.registry.peek('doc')!).doc),
    );
    await alice.close();
    await bob.close();
  });
});
