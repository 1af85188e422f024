import * as Y from 'yjs';

/**
 * Whether `s`, a decoded struct at clocks the document already holds, is what it holds there.
 *
 * Why: two writers under one client id (a squatter who wrote under a victim's id first) make two
 * different structs with the same id and clock. Yjs keeps the first and silently drops any
 * struct whose clock it has, so the victim's edit would be acknowledged and never stored, and
 * the two replicas would stay divergent with equal state vectors. A resend of the same struct
 * (a reconnect, a full-state POST, a peer's copy) is equal to what is stored and fine.
 *
 * Compared: the left and right origins, the content type and, for text and JSON values, the
 * content itself, over the part of the stored item that `s` starts in. What cannot be compared
 * counts as equal: collected (GC) or deleted content, whose value the relay no longer has.
 * Cost: one binary search per struct, and a comparison bounded by the struct's own size.
 */
export function matchesStored(store: Y.Doc['store'], s: Y.Item | Y.GC | Y.Skip): boolean {
  if (!(s instanceof Y.Item)) return true;
  const structs = store.clients.get(s.id.client);
  if (!structs) return true;
  const stored = structs[Y.findIndexSS(structs, s.id.clock)];
  if (!(stored instanceof Y.Item) || stored.deleted) return true;
  const offset = s.id.clock - stored.id.clock;
  // Inside a merged stored item, the left origin of a piece is its own predecessor.
  const origin = offset === 0 ? stored.origin : Y.createID(stored.id.client, s.id.clock - 1);
  if (!sameId(s.origin, origin) || !sameId(s.rightOrigin, stored.rightOrigin)) return false;
  if (s.content.constructor !== stored.content.constructor) return false;
  const length = Math.min(s.length, stored.length - offset);
  if (s.content instanceof Y.ContentString && stored.content instanceof Y.ContentString) {
    return s.content.str.slice(0, length) === stored.content.str.slice(offset, offset + length);
  }
  if (s.content instanceof Y.ContentAny && stored.content instanceof Y.ContentAny) {
    return JSON.stringify(s.content.arr.slice(0, length)) === JSON.stringify(stored.content.arr.slice(offset, offset + length));
  }
  return true;
}

function sameId(a: Y.ID | null, b: Y.ID | null): boolean {
  return a === b || (a !== null && b !== null && a.client === b.client && a.clock === b.clock);
}
