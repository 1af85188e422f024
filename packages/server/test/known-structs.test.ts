import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { matchesStored } from '../src/relay/known-structs.js';

/** The update `doc` emits for `edit`. */
function updateOf(doc: Y.Doc, edit: () => void): Uint8Array {
  let update: Uint8Array | null = null;
  const capture = (u: Uint8Array) => (update = u);
  doc.on('update', capture);
  edit();
  doc.off('update', capture);
  return update!;
}

/** Whether every struct of `update` matches what `stored` holds at its clocks. */
function allMatch(stored: Y.Doc, update: Uint8Array): boolean {
  const { structs, ds } = Y.decodeUpdate(update);
  return structs.every((s) => matchesStored(stored.store, s, ds));
}

describe('matchesStored', () => {
  it('accepts a resend of what is stored, also a piece of a merged stored item', () => {
    const writer = new Y.Doc();
    const first = updateOf(writer, () => writer.getText('t').insert(0, 'hello'));
    const second = updateOf(writer, () => writer.getText('t').insert(5, ' world'));
    const stored = new Y.Doc();
    Y.applyUpdate(stored, first);
    Y.applyUpdate(stored, second); // merged into one stored item "hello world"
    expect(allMatch(stored, first)).toBe(true);
    expect(allMatch(stored, second)).toBe(true);
    expect(allMatch(stored, Y.encodeStateAsUpdate(writer))).toBe(true);
  });

  it('refuses other text, other JSON values, or the same text at another place under the same ids', () => {
    const owner = new Y.Doc();
    const ownText = updateOf(owner, () => owner.getText('t').insert(0, '0123456789'));
    const ownArray = updateOf(owner, () => owner.getArray('a').push([1, { k: 'v' }]));
    const stored = new Y.Doc();
    Y.applyUpdate(stored, ownText);
    Y.applyUpdate(stored, ownArray);
    /** A replica that holds `base` and then writes under the owner's id (set after the apply: Yjs re-keys a doc that receives its own id). */
    const squatter = (base?: Uint8Array): Y.Doc => {
      const doc = new Y.Doc();
      if (base) Y.applyUpdate(doc, base);
      doc.clientID = owner.clientID;
      return doc;
    };

    const text = squatter();
    expect(allMatch(stored, updateOf(text, () => text.getText('t').insert(0, 'hello')))).toBe(false);
    const values = squatter(ownText);
    expect(allMatch(stored, updateOf(values, () => values.getArray('a').push([1, { k: 'x' }])))).toBe(false);
    // The same characters, but in another place (other origins).
    const elsewhere = new Y.Doc();
    elsewhere.getText('t').insert(0, 'seed');
    const placed = squatter(Y.encodeStateAsUpdate(elsewhere));
    expect(allMatch(stored, updateOf(placed, () => placed.getText('t').insert(4, '0123456789')))).toBe(false);
    // And the owner's own update, once more, matches.
    expect(allMatch(stored, ownArray)).toBe(true);
  });

  it('matches content the relay deleted and collected only with a struct the update deletes too', () => {
    const owner = new Y.Doc();
    const text = updateOf(owner, () => owner.getText('t').insert(0, '0123456789'));
    const stored = new Y.Doc();
    Y.applyUpdate(stored, text);
    stored.getText('t').delete(0, 10);
    const squatter = new Y.Doc();
    squatter.clientID = owner.clientID;
    // A squatter's live text where the relay holds deleted content: refused.
    expect(allMatch(stored, updateOf(squatter, () => squatter.getText('t').insert(0, 'hello')))).toBe(false);
    // The same place deleted in the sender's state too (a full-state POST after the deletion): fine.
    expect(allMatch(stored, Y.encodeStateAsUpdate(stored))).toBe(true);
  });
});
