import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { applyFromRelay } from '../src/sync/remote-apply.js';

const RELAY = Symbol('relay');

/** A document with some text, and its whole state as an update. */
function remoteText(text: string): Uint8Array {
  const d = new Y.Doc();
  d.getText('t').insert(0, text);
  return Y.encodeStateAsUpdate(d);
}

describe('applyFromRelay', () => {
  it('hands the update on as received, once, and leaves the listener attached', () => {
    const doc = new Y.Doc();
    const seen: { update: Uint8Array; origin: unknown }[] = [];
    const listener = (update: Uint8Array, origin: unknown): void => void seen.push({ update, origin });
    doc.on('update', listener);
    const update = remoteText('from the relay');
    applyFromRelay(doc, update, RELAY, listener);
    expect(seen).toEqual([{ update, origin: RELAY }]);
    expect(doc.getText('t').toString()).toBe('from the relay');
    doc.getText('t').insert(0, '>');
    expect(seen).toHaveLength(2);
    expect(seen[1]!.origin).toBeNull();
  });

  it('hands on, after it, a transaction an observer made while it applied, with that transaction’s origin', () => {
    const doc = new Y.Doc();
    const seen: { update: Uint8Array; origin: unknown }[] = [];
    const listener = (update: Uint8Array, origin: unknown): void => void seen.push({ update, origin });
    doc.on('update', listener);
    // An app that answers every remote change with a write of its own.
    doc.getText('t').observe((e) => {
      if (e.transaction.origin === RELAY) doc.transact(() => doc.getMap('m').set('seen', doc.getText('t').length), 'app');
    });
    applyFromRelay(doc, remoteText('ping'), RELAY, listener);
    expect(seen.map((s) => s.origin)).toEqual([RELAY, 'app']);
    // What was handed on is enough to rebuild the document elsewhere (a reload from the replica).
    const elsewhere = new Y.Doc();
    for (const s of seen) Y.applyUpdate(elsewhere, s.update);
    expect(elsewhere.getText('t').toString()).toBe('ping');
    expect(elsewhere.getMap('m').get('seen')).toBe(4);
    // And the app's write alone carries its change (what goes to the relay).
    const relaySide = new Y.Doc();
    Y.applyUpdate(relaySide, remoteText('ping'));
    Y.applyUpdate(relaySide, seen[1]!.update);
    expect(relaySide.getMap('m').get('seen')).toBe(4);
  });

  it('hands on nothing of an update Yjs refuses, and keeps the listener attached', () => {
    const doc = new Y.Doc();
    const seen: unknown[] = [];
    const listener = (_u: Uint8Array, origin: unknown): void => void seen.push(origin);
    doc.on('update', listener);
    expect(() => applyFromRelay(doc, new Uint8Array([255, 255, 255]), RELAY, listener)).toThrow();
    expect(seen).toEqual([]);
    doc.getText('t').insert(0, 'x');
    expect(seen).toEqual([null]);
  });

  it('keeps structs that wait for a missing one: both updates are handed on, and together rebuild the text', () => {
    const source = new Y.Doc();
    source.getText('t').insert(0, 'a');
    const first = Y.encodeStateAsUpdate(source);
    const sv = Y.encodeStateVector(source);
    source.getText('t').insert(1, 'b');
    const second = Y.encodeStateAsUpdate(source, sv);
    const doc = new Y.Doc();
    const seen: Uint8Array[] = [];
    const listener = (u: Uint8Array): void => void seen.push(u);
    doc.on('update', listener);
    applyFromRelay(doc, second, RELAY, listener); // waits for 'a'
    applyFromRelay(doc, first, RELAY, listener);
    expect(doc.getText('t').toString()).toBe('ab');
    const reloaded = new Y.Doc();
    for (const u of seen) Y.applyUpdate(reloaded, u);
    expect(reloaded.getText('t').toString()).toBe('ab');
  });
});

/** A document holding deletions, with the handle's stand-in 'update' listener recording origins. */
function docWithDeletions(): { doc: Y.Doc; seen: unknown[]; listener: (u: Uint8Array, origin: unknown) => void } {
  const doc = new Y.Doc();
  doc.getText('t').insert(0, 'abcdef');
  doc.getText('t').delete(1, 3);
  const seen: unknown[] = [];
  const listener = (_u: Uint8Array, origin: unknown): void => void seen.push(origin);
  doc.on('update', listener);
  return { doc, seen, listener };
}

describe('applyFromRelay (rev8 review)', () => {
  it('hands on nothing for a transaction made meanwhile that changed nothing (a subdocument loading, an empty transact)', () => {
    // Deletions the document already has: a re-encoded "meanwhile" update carried all of them.
    const { doc, seen, listener } = docWithDeletions();
    doc.getText('r').observe(() => doc.transact(() => {}, 'app'));
    const remote = new Y.Doc();
    remote.getText('r').insert(0, 'x');
    applyFromRelay(doc, Y.encodeStateAsUpdate(remote), RELAY, listener);
    // Yjs emits no 'update' for a transaction without content: neither do we (it would be a
    // local edit in the outbox, pending, sent to the relay).
    expect(seen).toEqual([RELAY]);
  });

  it('hands on nothing for an app that loads each subdocument the relay adds (subdoc.load() is an empty transaction of the parent)', () => {
    const { doc, seen, listener } = docWithDeletions();
    // The pattern of Yjs's documentation for subdocuments.
    doc.on('subdocs', ({ added }: { added: Set<Y.Doc> }) => added.forEach((sub) => sub.load()));
    const remote = new Y.Doc();
    remote.getMap('folders').set('a', new Y.Doc());
    applyFromRelay(doc, Y.encodeStateAsUpdate(remote), RELAY, listener);
    expect(doc.getSubdocs().size).toBe(1);
    // Not a local edit: nothing pending, nothing for the relay.
    expect(seen).toEqual([RELAY]);
  });

  it('hands on exactly the deletions a transaction made meanwhile made, not the whole delete set', () => {
    const doc = new Y.Doc();
    doc.getText('t').insert(0, 'abcdef');
    doc.getText('t').delete(1, 3);
    const seen: { update: Uint8Array; origin: unknown }[] = [];
    const listener = (update: Uint8Array, origin: unknown): void => void seen.push({ update, origin });
    doc.on('update', listener);
    doc.getText('r').observe(() => doc.transact(() => doc.getMap('m').set('k', 1), 'app'));
    const remote = new Y.Doc();
    remote.getText('r').insert(0, 'x');
    applyFromRelay(doc, Y.encodeStateAsUpdate(remote), RELAY, listener);
    expect(seen.map((s) => s.origin)).toEqual([RELAY, 'app']);
    const app = Y.decodeUpdate(seen[1]!.update);
    expect(app.ds.clients.size).toBe(0);
    expect(app.structs).toHaveLength(1);
  });

  it('hands on the relay update when an observer of the app throws (Yjs applied it whole, then rethrew)', () => {
    const doc = new Y.Doc();
    const seen: Uint8Array[] = [];
    const listener = (u: Uint8Array): void => void seen.push(u);
    doc.on('update', listener);
    doc.getText('t').observe(() => {
      throw new Error('a bug of the app');
    });
    expect(() => applyFromRelay(doc, remoteText('applied'), RELAY, listener)).toThrow('a bug of the app');
    expect(doc.getText('t').toString()).toBe('applied');
    const reloaded = new Y.Doc();
    for (const u of seen) Y.applyUpdate(reloaded, u);
    expect(reloaded.getText('t').toString()).toBe('applied');
  });

  it('hands on what an update that throws midway integrated (its structs, before a broken delete set)', () => {
    const remote = new Y.Doc();
    remote.getText('t').insert(0, 'kept');
    const whole = Y.encodeStateAsUpdate(remote);
    // No deletions: the delete set is its last byte (0 clients); without it, reading it throws
    // after the structs were integrated.
    const broken = whole.subarray(0, whole.length - 1);
    const doc = new Y.Doc();
    const seen: Uint8Array[] = [];
    const listener = (u: Uint8Array): void => void seen.push(u);
    doc.on('update', listener);
    expect(() => applyFromRelay(doc, broken, RELAY, listener)).toThrow();
    expect(doc.getText('t').toString()).toBe('kept');
    // The document shows it (and later local edits may build on it): the replica must hold it.
    const reloaded = new Y.Doc();
    for (const u of seen) Y.applyUpdate(reloaded, u);
    expect(reloaded.getText('t').toString()).toBe('kept');
  });
});
