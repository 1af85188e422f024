import * as Y from 'yjs';

type DeleteSet = ReturnType<typeof Y.decodeUpdate>['ds'];

/**
 * The id of the first struct of `decoded` under one of `clients` that starts at a clock the
 * document already holds and is not what it holds there (see matchesStored), or null when
 * every such struct matches.
 *
 * Why: Yjs skips the clocks it holds of a struct as known and integrates only the rest. Two
 * writers under one client id (a squatter wrote first) make different structs at the same id
 * and clock, so the victim's edit would be acknowledged and its known part never stored, the
 * replicas divergent for good with equal state vectors. Every struct whose first clock is below
 * the document's state for its id is compared, also one that runs past it (its tail is new
 * content, the caller's business).
 * Cost: per struct a map lookup, and for those at known clocks what matchesStored costs; never
 * what the document holds.
 */
export function differingKnownStruct(store: Y.Doc['store'], decoded: ReturnType<typeof Y.decodeUpdate>, clients: ReadonlySet<number>): Y.ID | null {
  for (const s of decoded.structs) {
    if (!(s instanceof Y.Item) || !clients.has(s.id.client)) continue;
    if (s.id.clock >= Y.getState(store, s.id.client)) continue; // all new (or waiting)
    if (!matchesStored(store, s, decoded.ds)) return s.id;
  }
  return null;
}

/**
 * Whether `s`, a decoded struct, is what the document holds at the clocks of it the document
 * holds (a struct running past the document's state is compared over its known part).
 *
 * A resend of the same struct (a reconnect, a full-state POST, a peer's copy) is equal to what
 * is stored, also where the relay holds it split into several items or merged into one.
 * Compared, over every stored item the known part of `s` spans: the left and right origins,
 * the parent and map key where `s` carries them, the content kind and value (text, JSON and
 * lib0 values including bigint and binary, embeds, formats, the kind and name of nested types,
 * subdocument guids).
 * Content the sender deleted (a full-state POST that removes someone's words) compares by
 * place only, with the first stored item (its delete set deletes those clocks on the relay
 * too, and its length costs the sender nothing, so walking it could cost what the document
 * holds). Content the relay deleted and collected (ContentDeleted, or GC under a deleted
 * type) matches only where the update deletes it too (`deletions`: its delete set), since its
 * value is gone. Any exception while comparing means "not equal", never an internal error.
 * Cost: one binary search, then a walk over the stored items the known part spans, each at
 * least one clock of `s` long: bounded by the struct's own size.
 */
export function matchesStored(store: Y.Doc['store'], s: Y.Item | Y.GC | Y.Skip, deletions: DeleteSet): boolean {
  if (!(s instanceof Y.Item)) return true;
  const structs = store.clients.get(s.id.client);
  if (!structs) return true;
  try {
    return knownPartMatches(structs, s, deletions);
  } catch {
    return false;
  }
}

function knownPartMatches(structs: Array<Y.Item | Y.GC>, s: Y.Item, deletions: DeleteSet): boolean {
  const client = s.id.client;
  const last = structs[structs.length - 1]!;
  const end = Math.min(s.id.clock + s.length, last.id.clock + last.length);
  const placeOnly = s.content instanceof Y.ContentDeleted;
  // A decoded struct names its parent (and map key) only when it has no origins to infer them from.
  const parent = s.parent as unknown as string | Y.ID | null;
  for (let i = Y.findIndexSS(structs, s.id.clock), clock = s.id.clock; clock < end; i++) {
    const stored = structs[i]!;
    const offset = clock - stored.id.clock; // > 0 only where `s` starts inside a stored item
    const length = Math.min(end, stored.id.clock + stored.length) - clock;
    if (!(stored instanceof Y.Item)) {
      if (placeOnly) return true; // no place left to compare either
      // Collected under a deleted type: nothing left to compare but that the sender deleted it too.
      if (!deletesRange(deletions, client, clock, clock + length)) return false;
    } else {
      // Inside one item (split or merged alike), a piece's left origin is its own predecessor.
      const origin = clock === s.id.clock ? s.origin : Y.createID(client, clock - 1);
      const storedOrigin = offset === 0 ? stored.origin : Y.createID(client, clock - 1);
      if (!sameId(origin, storedOrigin) || !sameId(s.rightOrigin, stored.rightOrigin)) return false;
      if (parent !== null && (!sameParent(parent, stored.parent as Y.AbstractType<unknown>) || (s.parentSub ?? null) !== (stored.parentSub ?? null))) return false;
      if (placeOnly) return true;
      // The relay's copy is gone: only a sender that deleted it too can be holding the same struct
      // (a live value here is a squatter's write the relay deleted since, or a stale read).
      if (stored.content instanceof Y.ContentDeleted) {
        if (!deletesRange(deletions, client, clock, clock + length)) return false;
      } else if (!sameContent(s.content, clock - s.id.clock, stored.content, offset, length)) return false;
    }
    clock += length;
  }
  return true;
}

/** Whether `a` (from `aFrom`) and `b` (from `bFrom`) hold the same `length` units of content. */
function sameContent(a: Y.Item['content'], aFrom: number, b: Y.Item['content'], bFrom: number, length: number): boolean {
  if (a.constructor !== b.constructor) return false;
  if (a instanceof Y.ContentString && b instanceof Y.ContentString) return sameText(a.str, aFrom, b.str, bFrom, length);
  if ((a instanceof Y.ContentAny && b instanceof Y.ContentAny) || (a instanceof Y.ContentJSON && b instanceof Y.ContentJSON)) {
    for (let i = 0; i < length; i++) if (!sameValue(a.arr[aFrom + i], b.arr[bFrom + i])) return false;
    return true;
  }
  if (a instanceof Y.ContentBinary && b instanceof Y.ContentBinary) return sameBytes(a.content, b.content);
  if (a instanceof Y.ContentEmbed && b instanceof Y.ContentEmbed) return sameValue(a.embed, b.embed);
  if (a instanceof Y.ContentFormat && b instanceof Y.ContentFormat) return a.key === b.key && sameValue(a.value, b.value);
  if (a instanceof Y.ContentType && b instanceof Y.ContentType) {
    type Named = { nodeName?: string; hookName?: string };
    const [x, y] = [a.type as Named, b.type as Named];
    return a.type.constructor === b.type.constructor && x.nodeName === y.nodeName && x.hookName === y.hookName;
  }
  if (a instanceof Y.ContentDoc && b instanceof Y.ContentDoc) return a.doc?.guid === b.doc?.guid;
  return true;
}

/**
 * Text equality where Yjs may have cut a surrogate pair: splitting an item between the two
 * halves (an insert inside an emoji) or encoding from inside one replaces each half with U+FFFD,
 * so a replacement character matches a surrogate half on the other side (one side of an honest
 * resend can hold the pair, the other the replacements).
 */
function sameText(a: string, aFrom: number, b: string, bFrom: number, length: number): boolean {
  const x = a.slice(aFrom, aFrom + length);
  const y = b.slice(bFrom, bFrom + length);
  if (x === y) return true;
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    const p = x.charCodeAt(i);
    const q = y.charCodeAt(i);
    if (p !== q && !(p === 0xfffd && isSurrogate(q)) && !(q === 0xfffd && isSurrogate(p))) return false;
  }
  return true;
}

function isSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdfff;
}

/**
 * Whether two decoded values (what lib0's readAny or JSON.parse produce: primitives including
 * bigint, arrays, plain objects, Uint8Array) are the same value, key order aside. Not lib0's
 * equalityDeep: that one recurses (a deeply nested value Yjs stores would overflow the stack
 * and refuse an honest resend), finds NaN unequal to itself and counts all of `b`'s keys. This
 * walk is iterative and stops at the first difference, so it costs at most what `a` (the
 * sender's value) holds, plus counting each stored object's keys once (`ownKeyCount`).
 */
function sameValue(a: unknown, b: unknown): boolean {
  const pairs: unknown[] = [a, b];
  while (pairs.length > 0) {
    const y = pairs.pop();
    const x = pairs.pop();
    if (Object.is(x, y)) continue;
    if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null) return false;
    if (x instanceof Uint8Array || y instanceof Uint8Array) {
      if (!(x instanceof Uint8Array && y instanceof Uint8Array && sameBytes(x, y))) return false;
    } else if (Array.isArray(x) || Array.isArray(y)) {
      if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false;
      for (let i = 0; i < x.length; i++) pairs.push(x[i], y[i]);
    } else {
      const [p, q] = [x as Record<string, unknown>, y as Record<string, unknown>];
      let keys = 0;
      for (const key in p) {
        if (!Object.hasOwn(p, key)) continue;
        if (!Object.hasOwn(q, key)) return false;
        pairs.push(p[key], q[key]);
        keys++;
      }
      if (keys !== ownKeyCount(q)) return false;
    }
  }
  return true;
}

/**
 * Own key counts of stored objects, computed once per object: counting means enumerating every
 * key (so does a `for...in`, which collects them all before its first iteration), and a one-key
 * value sent against a stored object of 500,000 keys must not cost 500,000 steps per update.
 * Stored values are never mutated (Yjs replaces them), so a count stays true; weak, so it goes
 * with the value.
 */
const keyCounts = new WeakMap<object, number>();
function ownKeyCount(o: Record<string, unknown>): number {
  let n = keyCounts.get(o);
  if (n === undefined) {
    n = Object.keys(o).length;
    keyCounts.set(o, n);
  }
  return n;
}

/** Whether the delete set deletes every clock of `client` in [from, to) (its ranges are sorted, as Yjs writes them). */
function deletesRange(ds: DeleteSet, client: number, from: number, to: number): boolean {
  const ranges = ds.clients.get(client);
  if (!ranges) return false;
  let clock = from;
  while (clock < to) {
    let lo = 0;
    let hi = ranges.length - 1;
    let next = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = ranges[mid]!;
      if (r.clock + r.len <= clock) lo = mid + 1;
      else if (r.clock > clock) hi = mid - 1;
      else {
        next = r.clock + r.len;
        break;
      }
    }
    if (next < 0) return false;
    clock = next;
  }
  return true;
}

/** A decoded parent (root type name or the parent type's item id) against a stored item's parent type. */
function sameParent(decoded: string | Y.ID, stored: Y.AbstractType<unknown>): boolean {
  if (typeof decoded === 'string') return stored._item === null && Y.findRootTypeKey(stored) === decoded;
  return stored._item !== null && sameId(decoded, stored._item.id);
}

function sameId(a: Y.ID | null, b: Y.ID | null): boolean {
  return a === b || (a !== null && b !== null && a.client === b.client && a.clock === b.clock);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
