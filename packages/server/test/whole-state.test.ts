import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { MAX_STATE_PARTS, STATE_PIECE_BYTES, WholeState } from '../src/relay/whole-state.js';

describe('WholeState', () => {
  it('encodes the whole state once until the document changes, and diffs for readers that have part of it', () => {
    const doc = new Y.Doc();
    const whole = new WholeState();
    whole.watch(doc);
    doc.getText('t').insert(0, 'hello');
    const first = whole.encode(doc, Y.encodeStateVector(new Y.Doc()));
    expect(whole.encode(doc)).toBe(first);
    const reader = new Y.Doc();
    Y.applyUpdate(reader, first);
    expect(reader.getText('t').toString()).toBe('hello');

    doc.getText('t').insert(5, ' world');
    const second = whole.encode(doc);
    expect(second).not.toBe(first);
    // A reader with part of the state gets only what it lacks.
    const diff = whole.encode(doc, Y.encodeStateVector(reader));
    expect(diff.byteLength).toBeLessThan(second.byteLength);
    Y.applyUpdate(reader, diff);
    expect(reader.getText('t').toString()).toBe('hello world');
    whole.unwatch(doc);
  });

  it('a document read while empty answers its first content later in one update, with no empty one ahead of it', () => {
    // Every new document is read once before its first edit (its creator's sync).
    const whole = new WholeState();
    const empty = new Y.Doc();
    whole.watch(empty);
    expect(whole.updates(empty, new Uint8Array([0]))).toHaveLength(1);
    empty.getText('t').insert(0, 'first');
    const answer = whole.updates(empty, new Uint8Array([0]));
    expect(answer).toHaveLength(1);
    const reader = new Y.Doc();
    Y.applyUpdate(reader, answer[0]!);
    expect(reader.getText('t').toString()).toBe('first');
  });

  it('never serves structs that did not integrate (pending), and sees them once they do', () => {
    const source = new Y.Doc();
    source.getText('t').insert(0, 'a');
    const firstUpdate = Y.encodeStateAsUpdate(source);
    const sv = Y.encodeStateVector(source);
    source.getText('t').insert(1, 'b');
    const secondUpdate = Y.encodeStateAsUpdate(source, sv);

    const doc = new Y.Doc();
    const whole = new WholeState();
    whole.watch(doc);
    Y.applyUpdate(doc, secondUpdate); // depends on the first: pending
    const before = new Y.Doc();
    Y.applyUpdate(before, whole.encode(doc));
    expect(before.getText('t').toString()).toBe('');
    Y.applyUpdate(doc, firstUpdate);
    const after = new Y.Doc();
    Y.applyUpdate(after, whole.encode(doc));
    expect(after.getText('t').toString()).toBe('ab');
  });

  it('a document watched empty is answered from its changes as Yjs encoded them, without encoding it whole', () => {
    const doc = new Y.Doc();
    const whole = new WholeState();
    whole.watch(doc);
    const events: Uint8Array[] = [];
    doc.on('update', (u: Uint8Array) => events.push(u));
    doc.getText('t').insert(0, 'hello');
    doc.getMap('m').set('k', 1);
    // Small changes are merged into one update for the reader (one message, one transaction).
    const parts = whole.updates(doc, Y.encodeStateVector(new Y.Doc()));
    expect(parts).toHaveLength(1);
    // Read, they stay as read; a change after them is its own part: the bytes Yjs encoded for
    // it, not a copy (and nothing merged again).
    doc.getMap('m').set('k2', 2);
    const next = whole.updates(doc, Y.encodeStateVector(new Y.Doc()));
    expect(next).toHaveLength(2);
    expect(next[0]).toBe(parts[0]);
    expect(next[1]).toBe(events[2]);
    const reader = new Y.Doc();
    for (const p of parts) Y.applyUpdate(reader, p);
    expect(reader.getText('t').toString()).toBe('hello');
    expect(reader.getMap('m').get('k')).toBe(1);
    const reader2 = new Y.Doc();
    for (const p of next) Y.applyUpdate(reader2, p);
    expect(reader2.getMap('m').get('k2')).toBe(2);
    // One update for whoever needs one (HTTP): encoded once until the next change.
    const one = whole.encode(doc);
    expect(whole.encode(doc)).toBe(one);
  });

  it('a large change is kept in pieces of about STATE_PIECE_BYTES', () => {
    const doc = new Y.Doc();
    const whole = new WholeState();
    whole.watch(doc);
    doc.getText('t').insert(0, 'x'.repeat(3 * STATE_PIECE_BYTES));
    const parts = whole.updates(doc);
    expect(parts.length).toBeGreaterThanOrEqual(3);
    for (const p of parts) expect(p.byteLength).toBeLessThanOrEqual(STATE_PIECE_BYTES + 64);
    const reader = new Y.Doc();
    for (const p of parts) Y.applyUpdate(reader, p);
    expect(reader.getText('t').length).toBe(3 * STATE_PIECE_BYTES);
  });

  it('past MAX_STATE_PARTS changes it encodes the whole state again and keeps changes from there', () => {
    const doc = new Y.Doc();
    doc.getText('t').insert(0, 'loaded');
    const whole = new WholeState();
    whole.watch(doc); // not empty: nothing known until the first whole read
    expect(whole.updates(doc)).toHaveLength(1);
    for (let i = 0; i <= MAX_STATE_PARTS; i++) doc.getText('t').insert(0, 'a');
    const again = whole.updates(doc);
    expect(again).toHaveLength(1);
    doc.getText('t').insert(0, 'b');
    // The encoding (read before) and the change since.
    expect(whole.updates(doc)).toHaveLength(2);
    const reader = new Y.Doc();
    for (const p of whole.updates(doc)) Y.applyUpdate(reader, p);
    expect(reader.getText('t').toString()).toBe(doc.getText('t').toString());
    whole.unwatch(doc);
  });
});
