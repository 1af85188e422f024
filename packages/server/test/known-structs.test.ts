import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { differingKnownStruct, matchesStored } from '../src/relay/known-structs.js';
import { updateOf } from '../../../test/support/client-ids.js';


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

/** A replica of `stored` that writes under `client` (set after the apply: Yjs re-keys a doc that receives its own id). */
function writerAs(client: number, base?: Y.Doc): Y.Doc {
  const doc = new Y.Doc();
  if (base) Y.applyUpdate(doc, Y.encodeStateAsUpdate(base));
  doc.clientID = client;
  return doc;
}

/** Whether `update` passes the known-clock check against `stored` for every client id it writes. */
function passes(stored: Y.Doc, update: Uint8Array): boolean {
  const decoded = Y.decodeUpdate(update);
  const clients = new Set(decoded.structs.map((s) => s.id.client));
  return differingKnownStruct(stored.store, decoded, clients) === null;
}

describe('differingKnownStruct (third review: overhang, several stored items, values)', () => {
  it('compares the known part of a struct that runs past the relay\'s state, and lets an equal known part through', () => {
    const squatter = new Y.Doc();
    const stored = new Y.Doc();
    Y.applyUpdate(stored, updateOf(squatter, () => squatter.getText('t').insert(0, 'XYZ')));
    const victim = writerAs(squatter.clientID);
    expect(passes(stored, updateOf(victim, () => victim.getText('t').insert(0, 'abcdef')))).toBe(false);
    // The squatter's own text plus more in one struct (a replica that merged its updates): the known part matches.
    const owner = writerAs(squatter.clientID);
    const merged = updateOf(owner, () => owner.getText('t').insert(0, 'XYZdef'));
    expect(Y.decodeUpdate(merged).structs).toHaveLength(1);
    expect(passes(stored, merged)).toBe(true);
  });

  it('walks every stored item a struct spans: a matching first item does not pass a differing second one', () => {
    const squatter = new Y.Doc();
    const stored = new Y.Doc();
    Y.applyUpdate(stored, updateOf(squatter, () => squatter.transact(() => {
      squatter.getText('t').insert(0, 'a');
      squatter.getText('t').insert(0, 'XY');
    })));
    const victim = writerAs(squatter.clientID);
    expect(passes(stored, updateOf(victim, () => victim.getText('t').insert(0, 'abc')))).toBe(false);
  });

  it('accepts a resend of one struct the relay holds split into several items (a third party typed inside it, or deleted part of it)', () => {
    const owner = new Y.Doc();
    const original = updateOf(owner, () => owner.getText('t').insert(0, 'hello world, again'));
    const stored = new Y.Doc();
    Y.applyUpdate(stored, original);
    const other = writerAs(777, stored);
    Y.applyUpdate(stored, updateOf(other, () => other.getText('t').insert(5, '!!')));
    Y.applyUpdate(stored, updateOf(other, () => other.getText('t').insert(10, '??')));
    expect(stored.store.clients.get(owner.clientID)!.length).toBe(3);
    expect(passes(stored, original)).toBe(true);
    expect(passes(stored, Y.encodeStateAsUpdate(owner))).toBe(true);
    // Part of it deleted and collected on the relay since: a stale resend cannot be told from a
    // squatter's (the value is gone) and is refused; one that saw the deletion passes.
    Y.applyUpdate(stored, updateOf(other, () => other.getText('t').delete(14, 3)));
    expect(stored.store.clients.get(owner.clientID)!.some((s) => s instanceof Y.Item && s.content instanceof Y.ContentDeleted)).toBe(true);
    expect(passes(stored, original)).toBe(false);
    Y.applyUpdate(owner, Y.encodeStateAsUpdate(stored));
    expect(passes(stored, Y.encodeStateAsUpdate(owner))).toBe(true);
    // And the stored state as a whole (a full-state POST of what a GET returned).
    expect(passes(stored, Y.encodeStateAsUpdate(stored))).toBe(true);
  });

  it('refuses a struct whose first stored item matches and a later one is a squatter\'s deleted text', () => {
    const squatter = new Y.Doc();
    const stored = new Y.Doc();
    Y.applyUpdate(stored, updateOf(squatter, () => squatter.getText('t').insert(0, 'aXY')));
    Y.applyUpdate(stored, updateOf(squatter, () => squatter.getText('t').delete(1, 2)));
    const victim = writerAs(squatter.clientID);
    expect(passes(stored, updateOf(victim, () => victim.getText('t').insert(0, 'abc')))).toBe(false);
  });

  it('compares values structurally: bigint, NaN, binary, nested objects, undefined; different ones are refused', () => {
    const owner = new Y.Doc();
    const value = { n: 5n, nan: Number.NaN, bytes: new Uint8Array([1, 2]), deep: [{ a: [1, { b: null }] }], u: undefined, s: 'x' };
    const original = updateOf(owner, () => owner.transact(() => {
      owner.getArray('a').push([value, 'str', Number.NaN]);
      owner.getMap('m').set('count', 7n);
    }));
    const stored = new Y.Doc();
    Y.applyUpdate(stored, original);
    expect(passes(stored, original)).toBe(true);
    expect(passes(stored, Y.encodeStateAsUpdate(stored))).toBe(true);
    const variants: unknown[] = [
      { ...value, n: 6n },
      { ...value, n: 5 },
      { ...value, bytes: new Uint8Array([1, 3]) },
      { ...value, deep: [{ a: [1, { b: 0 }] }] },
      { ...value, u: null },
      { ...value, extra: 1 },
    ];
    for (const v of variants) {
      const squatter = writerAs(owner.clientID);
      expect(passes(stored, updateOf(squatter, () => squatter.getArray('a').push([v, 'str', Number.NaN])))).toBe(false);
    }
    const squatter = writerAs(owner.clientID);
    expect(passes(stored, updateOf(squatter, () => squatter.transact(() => {
      squatter.getArray('a').push([value, 'str', Number.NaN]);
      squatter.getMap('m').set('count', 8n);
    })))).toBe(false);
  });

  it('accepts a resend of text whose surrogate pair the relay holds cut in two (U+FFFD halves)', () => {
    const owner = new Y.Doc();
    const original = updateOf(owner, () => owner.getText('t').insert(0, 'a😀b'));
    const stored = new Y.Doc();
    Y.applyUpdate(stored, original);
    const other = writerAs(777, stored);
    Y.applyUpdate(stored, updateOf(other, () => other.getText('t').insert(2, 'x'))); // between the halves
    expect(stored.getText('t').toString()).toContain('\ufffd');
    expect(passes(stored, original)).toBe(true);
    const squatter = writerAs(owner.clientID);
    expect(passes(stored, updateOf(squatter, () => squatter.getText('t').insert(0, 'a😀c')))).toBe(false);
  });

  it('compares formats, embeds, binary, nested type kinds and names, subdocuments', () => {
    const owner = new Y.Doc();
    const original = updateOf(owner, () => owner.transact(() => {
      const t = owner.getText('t');
      t.insert(0, 'bold', { bold: true });
      t.insertEmbed(4, { image: 'x.png', size: 3 });
      owner.getArray('a').push([new Uint8Array([9]), new Y.Map(), new Y.XmlElement('p'), new Y.Doc({ guid: 'sub-1' })]);
    }));
    const stored = new Y.Doc();
    Y.applyUpdate(stored, original);
    expect(passes(stored, original)).toBe(true);
    expect(passes(stored, Y.encodeStateAsUpdate(stored))).toBe(true);
    const differs = (edit: (d: Y.Doc) => void): boolean => {
      const squatter = writerAs(owner.clientID);
      return passes(stored, updateOf(squatter, () => squatter.transact(() => edit(squatter))));
    };
    expect(differs((d) => d.getText('t').insert(0, 'bold', { bold: false }))).toBe(false);
    expect(differs((d) => {
      d.getText('t').insert(0, 'bold', { bold: true });
      d.getText('t').insertEmbed(4, { image: 'y.png', size: 3 });
    })).toBe(false);
    expect(differs((d) => {
      d.getText('t').insert(0, 'bold', { bold: true });
      d.getText('t').insertEmbed(4, { image: 'x.png', size: 3 });
      d.getArray('a').push([new Uint8Array([9]), new Y.Map(), new Y.XmlElement('div'), new Y.Doc({ guid: 'sub-1' })]);
    })).toBe(false);
    expect(differs((d) => {
      d.getText('t').insert(0, 'bold', { bold: true });
      d.getText('t').insertEmbed(4, { image: 'x.png', size: 3 });
      d.getArray('a').push([new Uint8Array([9]), new Y.Map(), new Y.XmlElement('p'), new Y.Doc({ guid: 'sub-2' })]);
    })).toBe(false);
  });

  it('compares legacy JSON content (ContentJSON, undefined included) by value', () => {
    /** An update of `doc` inserting one ContentJSON item (what Yjs before v13 wrote for arrays). */
    const jsonUpdate = (doc: Y.Doc, values: unknown[]): Uint8Array => updateOf(doc, () => Y.transact(doc, (tr) => {
      const item = new Y.Item(Y.createID(doc.clientID, 0), null, null, null, null, doc.getArray('a'), null, new Y.ContentJSON(values));
      item.integrate(tr, 0);
    }));
    const owner = new Y.Doc();
    const original = jsonUpdate(owner, [1, undefined, { k: ['v', null] }]);
    const stored = new Y.Doc();
    Y.applyUpdate(stored, original);
    expect((stored.store.clients.get(owner.clientID)![0] as Y.Item).content).toBeInstanceOf(Y.ContentJSON);
    expect(passes(stored, original)).toBe(true);
    expect(passes(stored, Y.encodeStateAsUpdate(stored))).toBe(true);
    expect(passes(stored, jsonUpdate(writerAs(owner.clientID), [1, null, { k: ['v', null] }]))).toBe(false);
    expect(passes(stored, jsonUpdate(writerAs(owner.clientID), [1, undefined, { k: ['w', null] }]))).toBe(false);
  });

  it('compares the name of an XML hook', () => {
    const owner = new Y.Doc();
    const original = updateOf(owner, () => owner.getArray('a').push([new Y.XmlHook('hook-1')]));
    const stored = new Y.Doc();
    Y.applyUpdate(stored, original);
    expect(passes(stored, original)).toBe(true);
    const squatter = writerAs(owner.clientID);
    expect(passes(stored, updateOf(squatter, () => squatter.getArray('a').push([new Y.XmlHook('hook-2')])))).toBe(false);
  });

  it('content collected under a deleted type (GC) matches only a struct the update deletes too', () => {
    // The squatter writes under the victim's id into a type of his own, then deletes that type.
    const mallory = new Y.Doc();
    const stored = new Y.Doc();
    Y.applyUpdate(stored, updateOf(mallory, () => mallory.getMap('m').set('box', new Y.Array())));
    const squatter = writerAs(4242, stored);
    Y.applyUpdate(stored, updateOf(squatter, () => squatter.getMap('m').get('box') instanceof Y.Array && (squatter.getMap('m').get('box') as Y.Array<string>).push(['0123456789'])));
    Y.applyUpdate(mallory, Y.encodeStateAsUpdate(stored));
    Y.applyUpdate(stored, updateOf(mallory, () => mallory.getMap('m').delete('box')));
    expect(stored.store.clients.get(4242)![0]).toBeInstanceOf(Y.GC);
    const victim = writerAs(4242);
    expect(passes(stored, updateOf(victim, () => victim.getText('t').insert(0, 'hello')))).toBe(false);
    // The stored state itself (GC structs) and a full-state POST of it pass.
    expect(passes(stored, Y.encodeStateAsUpdate(stored))).toBe(true);
    const reader = writerAs(999, stored);
    expect(passes(stored, updateOf(reader, () => reader.getText('t').insert(0, 'hi')))).toBe(true);
  });

  it('a deleted struct spanning a whole client id costs one comparison, not a walk over the stored items', () => {
    const owner = new Y.Doc();
    const stored = new Y.Doc();
    Y.applyUpdate(stored, updateOf(owner, () => owner.getText('t').insert(0, 'x'.repeat(20_000))));
    // A third party splits it into 10,001 stored items.
    const other = writerAs(777, stored);
    Y.applyUpdate(stored, updateOf(other, () => other.transact(() => {
      for (let i = 0; i < 10_000; i++) other.getText('t').insert(2 * i + 1, 'y');
    })));
    expect(stored.store.clients.get(owner.clientID)!.length).toBe(10_001);
    owner.getText('t').delete(0, 20_000);
    const deleted = Y.encodeStateAsUpdate(owner); // one deleted struct of 20,000 clocks
    expect(Y.decodeUpdate(deleted).structs).toHaveLength(1);
    const started = performance.now();
    for (let i = 0; i < 100; i++) expect(passes(stored, deleted)).toBe(true);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
