import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { subdocStorageName } from '@capsync/core';
import { TestDevice } from '../support/client-fixture.js';
import type { EventEmitter } from 'node:events';
import { waitForEvent } from '../support/wait.js';
import { startMesh, whenMeshUp, type Mesh } from './mesh-fixture.js';

/**
 * Issue 12 P6: a subdocument is replicated between relays like any document, under its reserved
 * name (`.capsync/sub/<parent>/<guid>`), which peer relays may open on the plain endpoint and
 * clients may not.
 */

let mesh: Mesh | null = null;
afterEach(async () => {
  await mesh?.close();
  mesh = null;
});

/** Resolves once `check()` holds, re-checked on every update of `doc`. */
function whenDoc(doc: Y.Doc, check: () => boolean, what: string): Promise<unknown> {
  return waitForEvent(doc as unknown as EventEmitter, 'update', () => check() || undefined, what);
}

describe('relay mesh: subdocuments', () => {
  it('a subdocument edited through one relay reaches a client of the other', async () => {
    mesh = await startMesh(2);
    await whenMeshUp(mesh.relays);
    const [a, b] = mesh.relays as [NonNullable<Mesh['relays'][0]>, NonNullable<Mesh['relays'][0]>];
    const alice = await new TestDevice(a.url, 'memory', 'alice').open('notebook');
    alice.handle.doc.getMap<Y.Doc>('pages').set('p1', new Y.Doc({ guid: 'page-1' }));
    const alicePage = await alice.handle.subdocs.get('page-1');
    alicePage.doc.getText('t').insert(0, 'written at relay a');
    await Promise.all([alice.handle.flush(), alicePage.flush()]);

    const bob = await new TestDevice(b.url, 'memory', 'bob').open('notebook');
    await whenDoc(bob.handle.doc, () => bob.handle.doc.getMap('pages').size === 1, 'the page reference at relay b');
    const bobPage = await bob.handle.subdocs.get('page-1');
    await whenDoc(bobPage.doc, () => bobPage.doc.getText('t').toString() === 'written at relay a', 'the page content at relay b');
    bobPage.doc.getText('t').insert(0, 'b: ');
    await whenDoc(alicePage.doc, () => alicePage.doc.getText('t').toString() === 'b: written at relay a', 'b → a');
    const name = subdocStorageName('notebook', 'page-1');
    expect(a.relay.mesh.linksOf(name).length + b.relay.mesh.linksOf(name).length).toBe(1);
    await alice.close();
    await bob.close();
  });
});
