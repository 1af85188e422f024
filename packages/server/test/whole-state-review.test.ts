import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { splitUpdate } from '../src/relay/state-pieces.js';
import { STATE_PIECE_BYTES, WholeState } from '../src/relay/whole-state.js';

/** Review of issue 12 (commit 2539912): what WholeState keeps, and what a fresh replica is sent. */
const MiB = 1024 * 1024;
const bytesOf = (parts: readonly Uint8Array[]): number => parts.reduce((n, p) => n + p.byteLength, 0);

describe('WholeState keeps only content the document still holds (review rev9)', () => {
  it('a value overwritten again and again: a fresh replica is sent about the state, not every old value', () => {
    const doc = new Y.Doc();
    const whole = new WholeState();
    whole.watch(doc); // created on the relay: empty
    for (let i = 0; i < 12; i++) doc.getMap('m').set('photo', new Uint8Array(MiB).fill(i));
    const state = Y.encodeStateAsUpdate(doc).byteLength; // ~1 MiB: the old values are deleted (GC)
    const sent = bytesOf(whole.updates(doc, Y.encodeStateVector(new Y.Doc())));
    // Was 12 MiB for a 1 MiB document: each overwrite deletes, which drops the kept changes.
    expect(sent).toBeLessThanOrEqual(2 * state + MiB);
    whole.unwatch(doc);
  });

  it('text written then deleted: the document is empty, and so is what a fresh replica downloads', () => {
    const doc = new Y.Doc();
    const whole = new WholeState();
    whole.watch(doc);
    const text = doc.getText('t');
    text.insert(0, 'x'.repeat(4 * MiB));
    text.delete(0, text.length);
    expect(Y.encodeStateAsUpdate(doc).byteLength).toBeLessThan(100);
    expect(bytesOf(whole.updates(doc))).toBeLessThan(MiB);
    whole.unwatch(doc);
  });
});

describe('WholeState merges small kept changes for a fresh reader', () => {
  it('60 small edits by two writers are one update to apply, not 60; large pieces stay pieces', () => {
    const doc = new Y.Doc();
    const whole = new WholeState();
    whole.watch(doc);
    const other = new Y.Doc();
    other.clientID = 77;
    for (let i = 0; i < 30; i++) {
      doc.getText('t').insert(doc.getText('t').length, `edit ${i}. `);
      other.getText('t').insert(0, `other ${i}. `);
      Y.applyUpdate(doc, Y.encodeStateAsUpdate(other, Y.encodeStateVector(doc)));
    }
    const fresh = Y.encodeStateVector(new Y.Doc());
    const small = whole.updates(doc, fresh);
    expect(small).toHaveLength(1);
    const reader = new Y.Doc();
    for (const u of small) Y.applyUpdate(reader, u);
    expect(reader.getText('t').toString()).toBe(doc.getText('t').toString());
    // A large paste after them: its pieces stay pieces (a reader applies them in short tasks).
    doc.getText('t').insert(0, 'p'.repeat(3 * STATE_PIECE_BYTES));
    doc.getText('t').insert(doc.getText('t').length, 'after the paste');
    const parts = whole.updates(doc, fresh);
    expect(parts.length).toBeGreaterThanOrEqual(4);
    expect(Math.max(...parts.map((p) => p.byteLength))).toBeLessThan(STATE_PIECE_BYTES + 1024);
    const reader2 = new Y.Doc();
    for (const u of parts) {
      Y.applyUpdate(reader2, u);
      expect(reader2.store.pendingStructs).toBeNull();
    }
    expect(reader2.getText('t').toString()).toBe(doc.getText('t').toString());
    // Read again: the same parts (kept merged), nothing merged anew.
    const again = whole.updates(doc, fresh);
    expect(again.length).toBe(parts.length);
    again.forEach((p, i) => expect(p).toBe(parts[i]));
    whole.unwatch(doc);
  });
});

describe('splitUpdate on documents two people wrote (review)', () => {
  it('two writers who each typed after the other once: the state is still cut into pieces', () => {
    const a = new Y.Doc();
    const b = new Y.Doc();
    a.clientID = 1;
    b.clientID = 2;
    const sync = (): void => {
      Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)));
      Y.applyUpdate(a, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)));
    };
    // The commonest collaboration: each appends a paragraph after the other's.
    for (let i = 0; i < 4; i++) {
      a.getText('t').insert(a.getText('t').length, 'a'.repeat(STATE_PIECE_BYTES));
      sync();
      b.getText('t').insert(b.getText('t').length, 'b'.repeat(STATE_PIECE_BYTES));
      sync();
    }
    const update = Y.encodeStateAsUpdate(a);
    const pieces = splitUpdate(update, STATE_PIECE_BYTES);
    // Was 2 MiB in one piece (a cycle: a refers to b and b to a); structs are ordered now.
    expect(pieces.length).toBeGreaterThanOrEqual(8);
    const reader = new Y.Doc();
    for (const p of pieces) {
      Y.applyUpdate(reader, p);
      expect(reader.store.pendingStructs).toBeNull();
    }
    expect(reader.getText('t').toString()).toBe(a.getText('t').toString());
  });
});
