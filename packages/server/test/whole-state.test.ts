import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { WholeState } from '../src/relay/whole-state.js';

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
});
