import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { docFromUpdates, encodeIntegratedState, hasPending, verifiedSnapshot } from '@capsync/core';

/** An update from `client` typed after text of a `ghost` client the receiver never saw: it stays pending. */
function orphanUpdate(client: number, ghost: number, text: string): Uint8Array {
  const g = new Y.Doc();
  g.clientID = ghost;
  g.getText('t').insert(0, 'ghost text');
  const m = new Y.Doc();
  m.clientID = client;
  Y.applyUpdate(m, Y.encodeStateAsUpdate(g));
  m.getText('t').insert(g.getText('t').length, text);
  return Y.encodeStateAsUpdate(m, Y.encodeStateVector(g));
}

function victimDoc(): Y.Doc {
  const doc = new Y.Doc();
  doc.clientID = 1000;
  doc.getText('t').insert(0, 'victim text');
  return doc;
}

const textOf = (update: Uint8Array) => {
  const d = new Y.Doc();
  Y.applyUpdate(d, update);
  return d.getText('t').toString();
};

describe('encodeIntegratedState', () => {
  it('equals encodeStateAsUpdate without pending content', () => {
    const doc = victimDoc();
    expect(encodeIntegratedState(doc)).toEqual(Y.encodeStateAsUpdate(doc));
  });

  it('leaves out pending structs, and restores them on the document', () => {
    const doc = victimDoc();
    Y.applyUpdate(doc, orphanUpdate(2000, 3000, ' orphan'));
    expect(hasPending(doc)).toBe(true);
    const integrated = encodeIntegratedState(doc);
    expect(Y.encodeStateAsUpdate(doc).byteLength).toBeGreaterThan(integrated.byteLength);
    expect(textOf(integrated)).toBe('victim text');
    expect(hasPending(doc)).toBe(true);
  });
});

describe('verifiedSnapshot', () => {
  it('keeps legitimate pending structs so they integrate once their dependency arrives', () => {
    const doc = victimDoc();
    Y.applyUpdate(doc, orphanUpdate(2000, 3000, ' orphan'));
    const snap = verifiedSnapshot(doc)!;
    expect(snap.droppedPending).toBe(false);
    const restored = new Y.Doc();
    Y.applyUpdate(restored, snap.update);
    expect(hasPending(restored)).toBe(true);
  });

  it('drops forged pending structs that would displace integrated content', () => {
    const doc = victimDoc();
    // A pending struct from a client sorting above the victim, then one forging the victim's id.
    Y.applyUpdate(doc, orphanUpdate(doc.clientID + 1, 900_001, 'pending'));
    Y.applyUpdate(doc, orphanUpdate(doc.clientID, 900_002, 'forged'));
    expect(textOf(Y.encodeStateAsUpdate(doc))).not.toBe('victim text'); // what plain Yjs would store
    const snap = verifiedSnapshot(doc)!;
    expect(snap.droppedPending).toBe(true);
    expect(textOf(snap.update)).toBe('victim text');
  });
});

describe('docFromUpdates', () => {
  it('skips stored updates that make Yjs throw and keeps the rest', () => {
    const a = victimDoc();
    const good = Y.encodeStateAsUpdate(a);
    const b = new Y.Doc();
    b.getText('t').insert(0, 'more');
    const bad = new Uint8Array([1, 1, 5, 0, 200, 200]);
    const { doc, skipped } = docFromUpdates([good, bad, Y.encodeStateAsUpdate(b)]);
    expect(skipped).toEqual([1]);
    expect(doc.getText('t').toString()).toContain('victim text');
    expect(doc.getText('t').toString()).toContain('more');
  });
});
