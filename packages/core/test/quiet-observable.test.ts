import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { QuietObservable, newDoc } from '../src/index.js';

type Events = { e: (n: number) => void };

describe('QuietObservable', () => {
  it('calls each listener once per emit, in the order added; off removes one', () => {
    const o = new QuietObservable<Events>();
    const calls: string[] = [];
    const a = (n: number) => calls.push(`a${n}`);
    const b = (n: number) => calls.push(`b${n}`);
    o.emit('e', [0]); // nobody listens
    o.on('e', a);
    o.on('e', a); // the same function twice is one listener, as with lib0's Set
    o.emit('e', [1]);
    o.on('e', b);
    o.emit('e', [2]);
    o.off('e', a);
    o.emit('e', [3]);
    o.off('e', b);
    o.off('e', b);
    o.emit('e', [4]);
    o.on('e', b);
    o.emit('e', [5]);
    expect(calls).toEqual(['a1', 'a2', 'b2', 'b3', 'b5']);
  });

  it('does not call a listener added during the emit; calls one removed during it by an earlier listener', () => {
    for (const before of [0, 1]) {
      const o = new QuietObservable<Events>();
      const calls: string[] = [];
      const late = (n: number) => calls.push(`late${n}`);
      const removed = (n: number) => calls.push(`removed${n}`);
      const first = (n: number) => {
        calls.push(`first${n}`);
        o.on('e', late);
        o.off('e', removed);
      };
      o.on('e', first);
      if (before) o.on('e', removed);
      o.emit('e', [1]);
      o.emit('e', [2]);
      expect(calls).toEqual(before ? ['first1', 'removed1', 'first2', 'late2'] : ['first1', 'first2', 'late2']);
    }
  });

  it("keeps its listeners to itself: lib0's _observers stays empty", () => {
    const o = new QuietObservable<Events>();
    o.on('e', () => {});
    o.on('e', () => {});
    expect(o._observers.size).toBe(0);
  });

  it('works through a Proxy (Vue wraps class instances in one and calls their methods on it)', () => {
    const o = new Proxy(new QuietObservable<Events>(), {});
    const calls: number[] = [];
    const f = (n: number) => calls.push(n);
    o.on('e', f);
    o.emit('e', [1]);
    o.off('e', f);
    o.emit('e', [2]);
    o.destroy();
    expect(calls).toEqual([1]);
  });

  it('once fires one time; destroy drops every listener', () => {
    const o = new QuietObservable<Events>();
    const calls: number[] = [];
    o.once('e', (n) => calls.push(n));
    o.on('e', (n) => calls.push(n * 10));
    o.emit('e', [1]);
    o.emit('e', [2]);
    o.destroy();
    o.emit('e', [3]);
    expect(calls).toEqual([1, 10, 20]);
  });
});

describe('newDoc (its quiet emit)', () => {
  it('emits every Yjs event a listener asks for, in Yjs order, and nothing else changes', () => {
    const doc = newDoc();
    const plain = new Y.Doc();
    const seen = (d: Y.Doc) => {
      const events: string[] = [];
      for (const name of ['beforeAllTransactions', 'beforeTransaction', 'beforeObserverCalls', 'afterTransaction', 'afterTransactionCleanup', 'afterAllTransactions', 'update', 'updateV2'] as const) {
        d.on(name, () => events.push(name));
      }
      d.getText('t').insert(0, 'hello');
      return events;
    };
    expect(seen(doc)).toEqual(seen(plain));
    const updates: Uint8Array[] = [];
    const listener = (u: Uint8Array) => updates.push(u);
    doc.on('update', listener);
    doc.getText('t').insert(0, 'x');
    doc.off('update', listener);
    doc.getText('t').insert(0, 'y');
    expect(updates).toHaveLength(1);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc));
    expect(copy.getText('t').toString()).toBe('yxhello');
    expect(doc).toBeInstanceOf(Y.Doc);
  });

  it('makes documents that can become subdocuments (Yjs tells them by their constructor)', () => {
    const parent = new Y.Doc();
    const inMap = newDoc();
    const inArray = newDoc();
    parent.getMap('m').set('sub', inMap);
    parent.getArray('a').push([inArray]);
    expect(parent.getSubdocs().size).toBe(2);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(parent));
    expect(Array.from(copy.getSubdocGuids()).sort()).toEqual([inMap.guid, inArray.guid].sort());
  });
});
