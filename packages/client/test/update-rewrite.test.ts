import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { deletionUpdate, remakeUnder, withoutClients } from '../src/sync/update-rewrite.js';

function docWith(clientID: number): Y.Doc {
  const doc = new Y.Doc();
  doc.clientID = clientID;
  return doc;
}

describe('update rewrites for re-keying', () => {
  it("re-makes a client id's text, deletions and nested types under another id: same content, copies replace originals", () => {
    const base = docWith(1);
    base.getText('t').insert(0, 'shared ');
    const alice = docWith(2);
    Y.applyUpdate(alice, Y.encodeStateAsUpdate(base));
    alice.getText('t').insert(7, 'hello world');
    alice.getText('t').delete(9, 2); // "heo world": tombstones under alice's id
    const inner = new Y.Map<unknown>();
    alice.getMap('m').set('nested', inner);
    inner.set('k', new Y.Text('deep'));
    const before = { t: alice.getText('t').toString(), m: alice.getMap('m').toJSON() };

    const copy = remakeUnder(alice, 2, 99);
    const decoded = Y.decodeUpdate(copy);
    expect(decoded.structs.every((s) => s.id.client === 99)).toBe(true);
    // Locally: the copies and the deletion of the originals in one transaction.
    alice.transact(() => {
      Y.applyUpdate(alice, copy);
      Y.applyUpdate(alice, deletionUpdate(2, 0, Y.getState(alice.store, 2)));
    });
    expect(alice.getText('t').toString()).toBe(before.t);
    expect(alice.getMap('m').toJSON()).toEqual(before.m);

    // A relay that never had client id 2 gets the same content from the copy alone.
    const relay = docWith(3);
    Y.applyUpdate(relay, Y.encodeStateAsUpdate(base));
    Y.applyUpdate(relay, withoutClients(alice, Y.encodeStateAsUpdate(alice, Y.encodeStateVector(relay)), { held: new Map([[2, 0]]), copies: new Map([[2, 99]]) }));
    expect(relay.getText('t').toString()).toBe(before.t);
    expect(relay.getMap('m').toJSON()).toEqual(before.m);
    expect(Y.getState(relay.store, 2)).toBe(0);
    // and nothing waits for a missing dependency
    expect(relay.store.pendingStructs).toBeNull();
    expect(relay.store.pendingDs).toBeNull();
  });

  it('strips refused client ids and cuts their deletions to what the relay holds', () => {
    const doc = docWith(5);
    doc.getText('t').insert(0, 'abcdef');
    const other = docWith(6);
    Y.applyUpdate(other, Y.encodeStateAsUpdate(doc));
    other.getText('t').insert(6, 'xyz');
    other.getText('t').delete(0, 8); // deletes 5:0..5 and 6:0..1
    const update = Y.encodeStateAsUpdate(other);
    const stripped = withoutClients(other, update, { held: new Map([[5, 3]]), copies: new Map() });
    const { structs, ds } = Y.decodeUpdate(stripped);
    expect(structs.every((s) => s.id.client === 6)).toBe(true);
    expect(ds.clients.get(5)).toEqual([expect.objectContaining({ clock: 0, len: 3 })]);
    expect(ds.clients.get(6)).toEqual([expect.objectContaining({ clock: 0, len: 2 })]);
    // nothing of a refused id in it: the very same bytes
    expect(withoutClients(other, update, { held: new Map([[77, 0]]), copies: new Map() })).toBe(update);
  });

  for (const to of [5, 5000]) {
    it(`edits next to the deleted originals refer to other neighbours on the way out (copy id ${to < 1000 ? 'below' : 'above'} the refused one)`, () => {
      const alice = docWith(1000);
      const t = alice.getText('t');
      t.insert(0, 'hello');
      const squatter = docWith(1000); // the relay holds another identity's 1000:0
      squatter.getText('t').insert(0, 'x');
      const relay = docWith(3);
      Y.applyUpdate(relay, Y.encodeStateAsUpdate(squatter));
      const copy = remakeUnder(alice, 1000, to);
      alice.transact(() => {
        Y.applyUpdate(alice, copy);
        Y.applyUpdate(alice, deletionUpdate(1000, 0, 5));
      });
      alice.clientID = to;
      const refused = { held: new Map([[1000, 1]]), copies: new Map([[1000, to]]) };
      Y.applyUpdate(relay, withoutClients(alice, Y.encodeStateAsUpdate(alice, Y.encodeStateVector(relay)), refused));
      // Text inserts skip over deleted items: these may take the deleted originals as origins.
      for (const [index, text] of [[5, '!'], [0, '>'], [3, '-']] as const) {
        const sv = Y.encodeStateVector(relay);
        t.insert(index, text);
        Y.applyUpdate(relay, withoutClients(alice, Y.encodeStateAsUpdate(alice, sv), refused));
        expect(relay.store.pendingStructs).toBeNull();
        expect(relay.getText('t').toString()).toBe(t.toString());
      }
      expect(t.toString()).toBe('>he-llo!');
    });
  }
});
