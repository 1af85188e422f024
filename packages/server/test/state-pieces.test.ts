import * as prng from 'lib0/prng';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { splitUpdate } from '../src/relay/state-pieces.js';

/** Seeds the randomized cases; CAPSYNC_SEEDS=n runs more of them. */
const SEEDS = Number(process.env.CAPSYNC_SEEDS ?? 20);
const FIRST_SEED = Number(process.env.CAPSYNC_SEED ?? 1);

/** Applies `pieces` in order to a fresh document, checking nothing ever waits pending. */
function applyInOrder(pieces: Uint8Array[]): Y.Doc {
  const doc = new Y.Doc();
  for (const piece of pieces) {
    Y.applyUpdate(doc, piece);
    expect(doc.store.pendingStructs).toBeNull();
  }
  return doc;
}

function sameState(a: Y.Doc, b: Y.Doc): void {
  expect(Y.encodeStateVector(a)).toEqual(Y.encodeStateVector(b));
  expect(a.getText('t').toString()).toBe(b.getText('t').toString());
  // Keys sorted: a map's key order is the order its entries integrated in.
  const json = (doc: Y.Doc): string => {
    const m = doc.getMap('m').toJSON();
    return JSON.stringify(Object.keys(m).sort().map((k) => [k, m[k] instanceof Y.Doc ? `doc:${(m[k] as Y.Doc).guid}` : m[k]]));
  };
  expect(json(a)).toBe(json(b));
  expect(a.getArray('a').toJSON()).toEqual(b.getArray('a').toJSON());
  expect(a.getXmlFragment('x').toString()).toBe(b.getXmlFragment('x').toString());
  expect(a.getText('t').toDelta()).toEqual(b.getText('t').toDelta());
  // The same structs and deletions: encoding both again gives the same bytes.
  expect(Y.encodeStateAsUpdate(a)).toEqual(Y.encodeStateAsUpdate(b));
}

const ALPHABETS = ['abcdefghij ', 'äöüßé ', '日本語の文', '😀🎉👍', 'a😀ä日 '];

function randomText(gen: prng.PRNG, n: number): string {
  const alphabet = [...prng.oneOf(gen, ALPHABETS)];
  let s = '';
  for (let i = 0; i < n; i++) s += prng.oneOf(gen, alphabet);
  return s;
}

/** One client's random edits of every kind of content (one transaction each). */
function edit(gen: prng.PRNG, doc: Y.Doc): void {
  const text = doc.getText('t');
  const r = prng.int32(gen, 0, 9);
  if (r <= 3) text.insert(prng.int32(gen, 0, text.length), randomText(gen, prng.int32(gen, 1, 3000)), prng.bool(gen) ? { bold: true } : undefined);
  else if (r === 4 && text.length > 0) {
    const at = prng.int32(gen, 0, text.length - 1);
    text.delete(at, Math.min(text.length - at, prng.int32(gen, 1, 500)));
  } else if (r === 5) doc.getMap('m').set(`k${prng.int32(gen, 0, 5)}`, prng.oneOf(gen, [1, 'two', { three: [3] }, null, new Uint8Array([1, 2, 3])]));
  else if (r === 6) doc.getArray('a').insert(0, Array.from({ length: prng.int32(gen, 1, 40) }, (_, i) => i));
  else if (r === 7) {
    const el = new Y.XmlElement('p');
    el.insert(0, [new Y.XmlText(randomText(gen, 20))]);
    doc.getXmlFragment('x').insert(0, [el]);
  } else if (r === 8) text.insertEmbed(prng.int32(gen, 0, text.length), { image: 'x.png' });
  else doc.getMap('m').set('sub', new Y.Doc());
}

describe('splitUpdate', () => {
  it('leaves an update that fits whole', () => {
    const doc = new Y.Doc();
    doc.getText('t').insert(0, 'hello');
    const update = Y.encodeStateAsUpdate(doc);
    expect(splitUpdate(update, 1024)).toEqual([update]);
  });

  it('cuts one large text into pieces of at most the size, at character boundaries, that give the same document', () => {
    for (const alphabet of ALPHABETS) {
      const doc = new Y.Doc();
      const chars = [...alphabet];
      doc.getText('t').insert(0, Array.from({ length: 20_000 }, (_, i) => chars[i % chars.length]).join(''));
      const update = Y.encodeStateAsUpdate(doc);
      const pieces = splitUpdate(update, 4096);
      expect(pieces.length).toBeGreaterThan(update.byteLength / 4096);
      for (const p of pieces) expect(p.byteLength).toBeLessThanOrEqual(4096 + 64);
      sameState(applyInOrder(pieces), doc);
    }
  });

  it('a large text inserted into the middle of another (origin and right origin) splits too', () => {
    const doc = new Y.Doc();
    const text = doc.getText('t');
    text.insert(0, 'left right');
    text.insert(5, 'x'.repeat(50_000));
    const update = Y.encodeStateAsUpdate(doc);
    sameState(applyInOrder(splitUpdate(update, 8192)), doc);
  });

  it('random documents of several clients, with every kind of content, deletions and GC: pieces in order give the same document (seeded)', () => {
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      const gen = prng.create(seed);
      const docs = Array.from({ length: prng.int32(gen, 1, 3) }, () => {
        const doc = new Y.Doc({ gc: prng.bool(gen) });
        doc.clientID = prng.uint32(gen, 1, 2 ** 31);
        return doc;
      });
      const rounds = prng.int32(gen, 5, 40);
      for (let i = 0; i < rounds; i++) {
        const doc = prng.oneOf(gen, docs);
        edit(gen, doc);
        // Sometimes everyone syncs: the clients' content then refers to each other.
        if (prng.int32(gen, 0, 9) === 0) for (const a of docs) for (const b of docs) Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)));
      }
      for (const a of docs) for (const b of docs) Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)));
      const whole = Y.encodeStateAsUpdate(docs[0]!);
      const maxBytes = prng.oneOf(gen, [256, 1024, 8192]);
      const pieces = splitUpdate(whole, maxBytes);
      const reference = new Y.Doc();
      Y.applyUpdate(reference, whole);
      try {
        sameState(applyInOrder(pieces), reference);
      } catch (err) {
        throw new Error(`seed ${seed} (CAPSYNC_SEED=${seed} CAPSYNC_SEEDS=1 reproduces it): ${(err as Error).message}`);
      }
    }
  });

  it('clients that refer to each other one way or both ways are cut, each struct after what it refers to', () => {
    const a = new Y.Doc();
    const b = new Y.Doc();
    a.getText('t').insert(0, 'a'.repeat(10_000));
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a));
    b.getText('t').insert(5_000, 'b'.repeat(10_000)); // b refers to a
    const oneWay = Y.encodeStateAsUpdate(b);
    const pieces = splitUpdate(oneWay, 2048);
    expect(pieces.length).toBeGreaterThan(5);
    sameState(applyInOrder(pieces), b);

    Y.applyUpdate(a, Y.encodeStateAsUpdate(b));
    a.getText('t').insert(7_000, 'c'.repeat(10_000)); // a refers to b: a cycle
    const both = Y.encodeStateAsUpdate(a);
    const cut = splitUpdate(both, 2048);
    expect(cut.length).toBeGreaterThan(10);
    sameState(applyInOrder(cut), a);
  });

  it('a size smaller than a character still ends (one character per item)', () => {
    const doc = new Y.Doc();
    doc.getText('t').insert(0, '😀😀😀');
    const update = Y.encodeStateAsUpdate(doc);
    sameState(applyInOrder(splitUpdate(update, 3)), doc);
  });

  it('returns malformed input whole', () => {
    const junk = new Uint8Array(5000).fill(0xff);
    expect(splitUpdate(junk, 1024)).toEqual([junk]);
  });
});
