import * as Y from 'yjs';
import { ProtocolError } from '../errors.js';

/**
 * The fenced (CP) area of a document: one root Y.Map that only relays write, through fenced
 * `cp.set` requests checked against the lock authority. Clients read it like any other part
 * of the document (an AP read of a CP-written value); an update from any other route that
 * touches it is refused.
 */
export const FENCED_MAP = 'capsync:cp';

/** A fenced value, the token of the lease that wrote it, and its revision. */
export interface FencedEntry {
  value: unknown;
  token: number;
  /** 1 for the first write of the key, +1 for every later one: the condition of `ifRev`. */
  rev: number;
}

/** The fenced entry for `key`, if any (reads the local replica; never blocks). */
export function readFenced(doc: Y.Doc, key: string): FencedEntry | undefined {
  if (!doc.share.has(FENCED_MAP)) return undefined;
  const raw = doc.getMap(FENCED_MAP).get(key);
  return isFencedEntry(raw) ? raw : undefined;
}

/** Every fenced key and entry of the document. */
export function readAllFenced(doc: Y.Doc): Map<string, FencedEntry> {
  const out = new Map<string, FencedEntry>();
  if (!doc.share.has(FENCED_MAP)) return out;
  for (const [key, raw] of doc.getMap(FENCED_MAP).entries()) if (isFencedEntry(raw)) out.set(key, raw);
  return out;
}

/**
 * Writes a fenced entry. Only the relay calls this, after checking the lease and that `token`
 * is at least the entry's current token.
 */
export function writeFenced(doc: Y.Doc, key: string, value: unknown, token: number, origin?: unknown): FencedEntry {
  const entry: FencedEntry = { value, token, rev: (readFenced(doc, key)?.rev ?? 0) + 1 };
  doc.transact(() => doc.getMap(FENCED_MAP).set(key, entry), origin);
  return entry;
}

function isFencedEntry(raw: unknown): raw is FencedEntry {
  return (
    typeof raw === 'object' &&
    raw !== null &&
    typeof (raw as FencedEntry).token === 'number' &&
    typeof (raw as FencedEntry).rev === 'number' &&
    'value' in raw
  );
}

/**
 * Throws `ProtocolError('fenced-area')` if the decoded update (from `validateUpdateFor`, so
 * its references are already checked) inserts into, or deletes from, the document's fenced
 * map. Insertions are found through their parent: named for a root type, a known item, or
 * (when Yjs leaves the parent out because the item has an origin) the parent of that origin.
 * An origin inside the same update is checked as a struct of its own.
 *
 * One more route: a struct whose origin the document does not have yet waits in Yjs's
 * pending set and integrates next to that origin once it arrives. If the origin is a future
 * fenced write of the relay (its client ID and clocks are public), the struct would land in
 * the fenced map later, unchecked. So references to clients that authored fenced entries (the
 * relay's incarnations, which only write locally and are therefore always complete in the
 * document) beyond what the document has are refused.
 */
export function assertOutsideFencedArea(doc: Y.Doc, decoded: ReturnType<typeof Y.decodeUpdate>): void {
  const fenced = doc.share.get(FENCED_MAP) ?? null;
  const fail = (why: string): never => {
    throw new ProtocolError('fenced-area', `update touches the fenced area "${FENCED_MAP}": ${why}; only fenced cp.set may write there`);
  };
  const known = (id: Y.ID): boolean => id.clock < Y.getState(doc.store, id.client);
  let authors: Set<number> | null = null;
  const fencedAuthors = (): Set<number> => (authors ??= authorsOf(doc, fenced));
  for (const s of decoded.structs) {
    if (!(s instanceof Y.Item)) continue;
    const at = `${s.id.client}:${s.id.clock}`;
    const parent = s.parent as unknown;
    if (typeof parent === 'string') {
      if (parent === FENCED_MAP) fail(`inserts ${at}`);
    } else if (parent instanceof Y.ID) {
      if (known(parent) && fenced) {
        const p = Y.getItem(doc.store, parent);
        if (p instanceof Y.Item && p.parent === fenced) fail(`inserts ${at} inside a fenced value`);
      }
    } else if (fenced) {
      const ref = s.origin ?? s.rightOrigin;
      if (ref && known(ref)) {
        const neighbour = Y.getItem(doc.store, ref);
        if (neighbour instanceof Y.Item && neighbour.parent === fenced) fail(`inserts ${at}`);
      }
    }
    for (const ref of [s.origin, s.rightOrigin, parent instanceof Y.ID ? parent : null]) {
      if (ref && !known(ref) && (ref.client === doc.clientID || fencedAuthors().has(ref.client))) {
        fail(`${at} refers to ${ref.client}:${ref.clock}, a fenced writer's content the document does not have`);
      }
    }
  }
  // A deletion of a fenced writer's clocks the document does not have yet would wait in
  // Yjs's pending delete set and wipe the next fenced write when it lands.
  for (const [client, ranges] of decoded.ds.clients) {
    if (client !== doc.clientID && !fencedAuthors().has(client)) continue;
    const state = Y.getState(doc.store, client);
    for (const r of ranges) {
      if (r.clock + r.len > state) fail(`deletes ${client}:${r.clock}+${r.len}, a fenced writer's content the document does not have`);
    }
  }
  if (!fenced) return;
  for (const [client, ranges] of decoded.ds.clients) {
    const structs = doc.store.clients.get(client);
    if (!structs) continue;
    for (const r of ranges) {
      const end = Math.min(r.clock + r.len, Y.getState(doc.store, client));
      if (r.clock >= end) continue;
      for (let i = Y.findIndexSS(structs, r.clock); i < structs.length; i++) {
        const s = structs[i]!;
        if (s.id.clock >= end) break;
        if (s instanceof Y.Item && s.parent === fenced && !s.deleted) fail(`deletes ${client}:${s.id.clock}`);
      }
    }
  }
}

/** Client IDs that wrote entries of the fenced map, current or overwritten. */
function authorsOf(_doc: Y.Doc, fenced: Y.AbstractType<Y.YEvent<any>> | null): Set<number> {
  const out = new Set<number>();
  if (!fenced) return out;
  for (const item of fenced._map.values()) {
    for (let i: Y.Item | null = item; i; i = i.left) out.add(i.id.client);
  }
  return out;
}
