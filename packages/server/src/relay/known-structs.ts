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
 * Compared, over the part of the stored item that `s` starts in: the left and right origins,
 * the parent and map key where `s` carries them, the content kind and value (text, JSON values,
 * binary, embeds, formats, the kind and node name of nested types, subdocument guids). Content
 * the sender deleted (a full-state POST that removes someone's words) compares by place only;
 * content the relay deleted and collected matches only a struct the update deletes too
 * (`deletions`: its delete set), since its value is gone.
 * Cost: one binary search per struct, and a comparison bounded by the struct's own size.
 */
export function matchesStored(store: Y.Doc['store'], s: Y.Item | Y.GC | Y.Skip, deletions: ReturnType<typeof Y.decodeUpdate>['ds']): boolean {
  if (!(s instanceof Y.Item)) return true;
  const structs = store.clients.get(s.id.client);
  if (!structs) return true;
  const stored = structs[Y.findIndexSS(structs, s.id.clock)];
  if (!(stored instanceof Y.Item)) return true; // collected: nothing left to compare
  const offset = s.id.clock - stored.id.clock;
  // Inside a merged stored item, the left origin of a piece is its own predecessor.
  const origin = offset === 0 ? stored.origin : Y.createID(stored.id.client, s.id.clock - 1);
  if (!sameId(s.origin, origin) || !sameId(s.rightOrigin, stored.rightOrigin)) return false;
  // A decoded struct names its parent (and map key) only when it has no origins to infer them from.
  const parent = s.parent as unknown as string | Y.ID | null;
  if (parent !== null && (!sameParent(parent, stored.parent as Y.AbstractType<unknown>) || (s.parentSub ?? null) !== (stored.parentSub ?? null))) return false;
  if (s.content instanceof Y.ContentDeleted) return true;
  // The relay's copy is gone: only a sender that deleted it too can be holding the same struct
  // (a live value here is a squatter's write the relay deleted since, or a stale read).
  if (stored.content instanceof Y.ContentDeleted) return Y.isDeleted(deletions, s.id);
  return sameContent(s.content, stored.content, offset, Math.min(s.length, stored.length - offset));
}

/** Whether `a` (from its start) and `b` (from `offset`) hold the same `length` units of content. */
function sameContent(a: Y.Item['content'], b: Y.Item['content'], offset: number, length: number): boolean {
  if (a.constructor !== b.constructor) return false;
  if (a instanceof Y.ContentString && b instanceof Y.ContentString) return a.str.slice(0, length) === b.str.slice(offset, offset + length);
  if ((a instanceof Y.ContentAny && b instanceof Y.ContentAny) || (a instanceof Y.ContentJSON && b instanceof Y.ContentJSON)) {
    return JSON.stringify(a.arr.slice(0, length)) === JSON.stringify(b.arr.slice(offset, offset + length));
  }
  if (a instanceof Y.ContentBinary && b instanceof Y.ContentBinary) return sameBytes(a.content, b.content);
  if (a instanceof Y.ContentEmbed && b instanceof Y.ContentEmbed) return JSON.stringify(a.embed) === JSON.stringify(b.embed);
  if (a instanceof Y.ContentFormat && b instanceof Y.ContentFormat) return a.key === b.key && JSON.stringify(a.value) === JSON.stringify(b.value);
  if (a instanceof Y.ContentType && b instanceof Y.ContentType) {
    return a.type.constructor === b.type.constructor && (a.type as { nodeName?: string }).nodeName === (b.type as { nodeName?: string }).nodeName;
  }
  if (a instanceof Y.ContentDoc && b instanceof Y.ContentDoc) return a.doc?.guid === b.doc?.guid;
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
