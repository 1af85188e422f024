/**
 * WholeState under random editing (review of the twelfth session's merge of small parts):
 * three writers, text with formats and embeds, maps, arrays, XML, subdocuments, binaries,
 * occasional pastes larger than a piece, updates delivered out of order (pending on the
 * relay), with and without deletions. After random changes a fresh reader applies what
 * `updates` gives, piece by piece: nothing may stay pending, and it must hold what the relay
 * holds. A read with no change between gives the same parts (nothing merged again).
 *
 * Seeded: CI runs WHOLE_STATE_SEEDS (default 3) seeds each way (~1 s each); set it to run more; the seed is in the test name.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { splitUpdate } from '../src/relay/state-pieces.js';
import { STATE_PIECE_BYTES, WholeState } from '../src/relay/whole-state.js';

const SEEDS = Number(process.env['WHOLE_STATE_SEEDS'] ?? 3);
const EMPTY_SV = new Uint8Array([0]);

function random(seed: number): { next(): number; int(n: number): number } {
  let s = seed >>> 0 || 1;
  const next = (): number => {
    // xorshift32
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  return { next, int: (n) => Math.floor(next() * n) };
}

function edit(doc: Y.Doc, r: ReturnType<typeof random>, deletes: boolean): void {
  const t = doc.getText('t');
  if (r.next() < 0.01) {
    t.insert(r.int(t.length + 1), 'é'.repeat(STATE_PIECE_BYTES / 2 + r.int(40_000)));
    return;
  }
  switch (r.int(11)) {
    case 0:
      t.insert(r.int(t.length + 1), 'ab'.slice(0, 1 + r.int(2)));
      break;
    case 1:
      doc.getMap('m').set(`k${r.int(1e6)}`, { a: r.int(10) });
      break;
    case 2:
      doc.getArray('a').insert(0, [new Uint8Array(r.int(50)), 'x', 1]);
      break;
    case 3: {
      const p = new Y.XmlElement('p');
      p.setAttribute('c', 'v');
      p.insert(0, [new Y.XmlText('hi')]);
      const x = doc.getXmlFragment('x');
      x.insert(r.int(x.length + 1), [p]);
      break;
    }
    case 4:
      t.insertEmbed(r.int(t.length + 1), { img: 'u' });
      break;
    case 5:
      t.insert(r.int(t.length + 1), 'fmt', { bold: true });
      break;
    case 6:
      doc.getMap('subs').set(`s${r.int(1e6)}`, new Y.Doc());
      break;
    case 7:
      if (deletes && t.length > 2) t.delete(r.int(t.length - 1), 1);
      else t.insert(0, 'z');
      break;
    case 8:
      if (deletes && t.length > 3) t.format(r.int(t.length - 2), 2, { italic: r.next() < 0.5 ? true : null });
      else t.insert(0, 'q');
      break;
    case 9:
      doc.getArray('a').push([new Y.Map([['n', 1]])]);
      break;
    default:
      t.insert(t.length, 'tail'.repeat(1 + r.int(4000)));
  }
}

/** A fresh reader applies `parts` one by one: nothing pending, and the relay's content. */
function expectReads(relay: Y.Doc, parts: readonly Uint8Array[]): void {
  const reader = new Y.Doc();
  for (const p of parts) {
    Y.applyUpdate(reader, p);
    expect(reader.store.pendingStructs).toBeNull();
    expect(reader.store.pendingDs).toBeNull();
  }
  expect(Y.encodeStateVector(reader)).toEqual(Y.encodeStateVector(relay));
  expect(JSON.stringify(reader.getText('t').toDelta())).toBe(JSON.stringify(relay.getText('t').toDelta()));
  expect(reader.getMap('m').toJSON()).toEqual(relay.getMap('m').toJSON());
  expect(reader.getXmlFragment('x').toString()).toBe(relay.getXmlFragment('x').toString());
  expect(reader.getArray('a').length).toBe(relay.getArray('a').length);
  expect([...reader.getMap('subs').keys()].sort()).toEqual([...relay.getMap('subs').keys()].sort());
}

describe('WholeState: what a fresh reader is sent under random edits', () => {
  for (const deletes of [false, true]) {
    for (let i = 1; i <= SEEDS; i++) {
      const seed = i * 7919 + (deletes ? 1 : 0);
      it(`seed ${seed} (deletions ${deletes ? 'on' : 'off'})`, () => {
        const r = random(seed);
        const relay = new Y.Doc();
        const whole = new WholeState();
        whole.watch(relay);
        const writers = [0, 1, 2].map((w) => {
          const d = new Y.Doc();
          d.clientID = 100 + w + i * 10;
          return d;
        });
        const late: Uint8Array[] = [];
        let reads = 0;
        for (let step = 0; step < 300; step++) {
          const w = writers[r.int(3)]!;
          const before = Y.encodeStateVector(w);
          edit(w, r, deletes);
          const u = Y.encodeStateAsUpdate(w, before);
          // Some updates reach the relay late (the later ones wait pending there).
          if (r.next() < 0.1) late.push(u);
          else Y.applyUpdate(relay, u);
          if (late.length > 0 && r.next() < 0.3) Y.applyUpdate(relay, late.splice(r.int(late.length), 1)[0]!);
          for (const o of writers) if (r.next() < 0.3) Y.applyUpdate(o, Y.encodeStateAsUpdate(relay, Y.encodeStateVector(o)));
          if (r.next() < 0.3) {
            reads++;
            const parts = whole.updates(relay, EMPTY_SV);
            expectReads(relay, parts);
            const again = whole.updates(relay, EMPTY_SV);
            expect(again.length).toBe(parts.length);
            again.forEach((p, k) => expect(p).toBe(parts[k]));
          }
        }
        for (const u of late) Y.applyUpdate(relay, u);
        expectReads(relay, whole.updates(relay, EMPTY_SV));
        expect(reads).toBeGreaterThan(10);
        whole.unwatch(relay);
      }, 60_000);
    }
  }
});

describe('pieces of a state two people wrote, merged with a change after them (review)', () => {
  it("a split piece with two clients, then a small edit: Y.mergeUpdates keeps every client's structs", () => {
    const a = new Y.Doc();
    const b = new Y.Doc();
    a.clientID = 1;
    b.clientID = 50;
    a.getText('t').insert(0, 'x'.repeat(STATE_PIECE_BYTES + 1000));
    b.getText('u').insert(0, 'hello');
    Y.applyUpdate(a, Y.encodeStateAsUpdate(b));
    const pieces = splitUpdate(Y.encodeStateAsUpdate(a), STATE_PIECE_BYTES);
    expect(pieces.length).toBeGreaterThan(1);
    b.getText('u').insert(5, '!');
    const merged = Y.mergeUpdates([pieces.at(-1)!, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a))]);
    const reader = new Y.Doc();
    for (const p of [...pieces.slice(0, -1), merged]) Y.applyUpdate(reader, p);
    expect(reader.store.pendingStructs).toBeNull();
    expect(reader.getText('u').toString()).toBe('hello!');
    expect(reader.getText('t').length).toBe(STATE_PIECE_BYTES + 1000);
  });
});
