import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { writeVarUint } from 'lib0/encoding';
import { FENCED_MAP, assertOutsideFencedArea, readFenced, validateUpdateFor, writeFenced, isCapsyncError } from '@capsync/core';

/** The relay's document with one fenced entry, and a client replica synced to it. */
function setup(): { relay: Y.Doc; client: Y.Doc } {
  const relay = new Y.Doc();
  relay.getText('notes').insert(0, 'hello');
  writeFenced(relay, 'stock/1', 10, 3);
  const client = new Y.Doc();
  Y.applyUpdate(client, Y.encodeStateAsUpdate(relay));
  return { relay, client };
}

/** What the client's edit sends the relay. */
function edit(client: Y.Doc, fn: (doc: Y.Doc) => void): Uint8Array {
  const before = Y.encodeStateVector(client);
  fn(client);
  return Y.encodeStateAsUpdate(client, before);
}

function verdict(relay: Y.Doc, update: Uint8Array): string {
  try {
    assertOutsideFencedArea(relay, validateUpdateFor(relay, update));
    return 'ok';
  } catch (err) {
    if (isCapsyncError(err)) return err.code;
    throw err;
  }
}

describe('fenced area', () => {
  it('lets ordinary edits through, before and after the fenced map exists', () => {
    const fresh = new Y.Doc();
    const c = new Y.Doc();
    expect(verdict(fresh, edit(c, (d) => d.getMap('catalog').set('p1', { name: 'Mug' })))).toBe('ok');
    const { relay, client } = setup();
    expect(verdict(relay, edit(client, (d) => d.getText('notes').insert(5, ' world')))).toBe('ok');
    expect(verdict(relay, edit(client, (d) => d.getText('notes').delete(0, 2)))).toBe('ok');
    expect(verdict(relay, edit(client, (d) => d.getMap('catalog').set('stock/1', 99)))).toBe('ok');
    const nested = new Y.Map();
    expect(verdict(relay, edit(client, (d) => d.getArray('list').push([nested])))).toBe('ok');
  });

  it('refuses a new entry, an overwrite and a delete in the fenced map', () => {
    const { relay, client } = setup();
    // New key: the item names the root type as its parent.
    expect(verdict(relay, edit(client, (d) => d.getMap(FENCED_MAP).set('stock/2', { value: 5, token: 1 })))).toBe('fenced-area');
    // Overwrite: Yjs encodes the parent only through the origin (the old entry).
    expect(verdict(relay, edit(client, (d) => d.getMap(FENCED_MAP).set('stock/1', { value: 1e6, token: 99 })))).toBe('fenced-area');
    // Delete: only a delete set.
    expect(verdict(relay, edit(client, (d) => d.getMap(FENCED_MAP).delete('stock/1')))).toBe('fenced-area');
    // A fresh document without the fenced map yet.
    const empty = new Y.Doc();
    const c = new Y.Doc();
    expect(verdict(empty, edit(c, (d) => d.getMap(FENCED_MAP).set('k', { value: 1, token: 1 })))).toBe('fenced-area');
  });

  it('refuses a struct parked on a fenced writer\'s future clock (it would integrate into the fenced map later)', () => {
    const { relay, client } = setup();
    // The attacker predicts the relay's next fenced write (its client ID and clock are public)
    // and builds on it before it exists: Yjs would keep the struct pending and integrate it
    // next to that write, inside the fenced map.
    const future = new Y.Doc();
    Y.applyUpdate(future, Y.encodeStateAsUpdate(relay));
    future.clientID = relay.clientID; // after applying, or Yjs picks itself a new ID
    writeFenced(future, 'stock/1', 11, 4);
    expect(future.getMap(FENCED_MAP)._map.get('stock/1')!.id.client).toBe(relay.clientID);
    Y.applyUpdate(client, Y.encodeStateAsUpdate(future));
    const attack = edit(client, (d) => d.getMap(FENCED_MAP).set('stock/1', { value: 1e6, token: 4 }));
    // Sent without the relay's (future) write it depends on.
    const withoutFuture = Y.diffUpdate(attack, Y.encodeStateVector(future));
    expect(verdict(relay, withoutFuture)).toBe('fenced-area');
    // Building on another client's content the relay does not have yet (it came over
    // BroadcastChannel, say) is legitimate and stays allowed.
    const other = new Y.Doc();
    other.getText('notes').insert(0, 'elsewhere');
    const peer = new Y.Doc();
    Y.applyUpdate(peer, Y.encodeStateAsUpdate(relay));
    Y.applyUpdate(peer, Y.encodeStateAsUpdate(other));
    const onUnknown = edit(peer, (d) => d.getText('notes').insert(d.getText('notes').length, '!'));
    expect(Y.decodeUpdate(onUnknown).structs[0]!.id.client).toBe(peer.clientID);
    expect(verdict(relay, onUnknown)).toBe('ok');
  });

  it('refuses a deletion parked on a fenced writer\'s future clocks (it would wipe the next fenced write)', () => {
    const { relay } = setup();
    const state = Y.getState(relay.store, relay.clientID);
    const update = (() => {
      const e = new Y.UpdateEncoderV1();
      // 0 struct groups, then the delete set: 1 client, its id, 1 range (clock, len).
      for (const n of [0, 1, relay.clientID, 1, state, 100]) writeVarUint(e.restEncoder, n);
      return e.toUint8Array();
    })();
    expect(verdict(relay, update)).toBe('fenced-area');
    // Deleting others' future clocks stays allowed (ordinary out-of-order delivery).
    const other = (() => {
      const e = new Y.UpdateEncoderV1();
      for (const n of [0, 1, 424242, 1, 0, 3]) writeVarUint(e.restEncoder, n);
      return e.toUint8Array();
    })();
    expect(verdict(relay, other)).toBe('ok');
  });

  it('writeFenced is readable on every replica and keeps the token', () => {
    const { relay, client } = setup();
    expect(readFenced(client, 'stock/1')).toEqual({ value: 10, token: 3, rev: 1 });
    const before = Y.encodeStateVector(client);
    writeFenced(relay, 'stock/1', 9, 4);
    Y.applyUpdate(client, Y.encodeStateAsUpdate(relay, before));
    expect(readFenced(client, 'stock/1')).toEqual({ value: 9, token: 4, rev: 2 });
    expect(readFenced(client, 'missing')).toBeUndefined();
  });

  it('random edits outside the fenced area are never refused (seeded)', () => {
    const seed = Number(process.env['SEED'] ?? 7);
    console.log(`fenced-area random edits: seed ${seed}`);
    let s = seed >>> 0;
    const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
    const { relay, client } = setup();
    for (let i = 0; i < 300; i++) {
      const update = edit(client, (d) => {
        const r = rand();
        const text = d.getText('notes');
        if (r < 0.4) text.insert(Math.floor(rand() * (text.length + 1)), 'x');
        else if (r < 0.6 && text.length > 0) text.delete(Math.floor(rand() * text.length), 1);
        else if (r < 0.8) d.getMap('m').set(`k${Math.floor(rand() * 5)}`, i);
        else d.getMap('m').delete(`k${Math.floor(rand() * 5)}`);
      });
      expect(verdict(relay, update)).toBe('ok');
      Y.applyUpdate(relay, update);
      if (i % 50 === 0) {
        const before = Y.encodeStateVector(client);
        writeFenced(relay, 'stock/1', i, 10 + i);
        Y.applyUpdate(client, Y.encodeStateAsUpdate(relay, before));
      }
    }
  });
});
