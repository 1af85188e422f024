import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';

/**
 * Rewrites of Yjs (v1) updates by client id, for re-keying (see ClientRekey): a copy of one
 * client id's structs under another, a deletion of a client id's clock range, and an update
 * stripped of client ids the relay refuses. All cost what the update or the re-keyed client
 * id's structs hold, never more; they are used only after a relay refused a client id.
 */

type Struct = ReturnType<typeof Y.decodeUpdate>['structs'][number];

/**
 * An update that re-makes every struct `doc` holds under client id `from` (content, tombstones,
 * deletions) under client id `to`, at the same clocks. References between those structs (left
 * and right origins, parent items) follow them to `to`; references to other client ids stay as
 * they are. Applied to a document that holds the `from` structs, the copies integrate next to
 * the originals (same origins); `to` must be a client id nobody has written under.
 */
export function remakeUnder(doc: Y.Doc, from: number, to: number): Uint8Array {
  // Everything the document has of other client ids counts as known: only `from` is encoded.
  const known = Y.decodeStateVector(Y.encodeStateVector(doc));
  known.set(from, 0);
  const { structs, ds } = Y.decodeUpdate(Y.encodeStateAsUpdate(doc, Y.encodeStateVector(known)));
  const move = (id: Y.ID | null): Y.ID | null => (id !== null && id.client === from ? Y.createID(to, id.clock) : id);
  const moved: Struct[] = [];
  for (const s of structs) {
    if (s.id.client !== from) continue;
    (s as { id: Y.ID }).id = Y.createID(to, s.id.clock);
    if (s instanceof Y.Item) {
      s.origin = move(s.origin);
      s.rightOrigin = move(s.rightOrigin);
      if (s.parent instanceof Y.ID) s.parent = move(s.parent);
    }
    moved.push(s);
  }
  const deletions = new Map<number, { clock: number; len: number }[]>();
  const own = ds.clients.get(from);
  if (own && own.length > 0) deletions.set(to, own);
  return encodeV1(moved, deletions);
}

/** An update that only deletes `len` clocks of client id `client` from `clock` on. */
export function deletionUpdate(client: number, clock: number, len: number): Uint8Array {
  return encodeV1([], new Map([[client, [{ clock, len }]]]));
}

/** Client ids the relay refused, as `withoutClients` needs them. */
export interface Refused {
  /** Refused client id → the clock below which the relay holds structs of it. */
  held: ReadonlyMap<number, number>;
  /** Refused client id → the client id its structs were re-made under (see `remakeUnder`). */
  copies: ReadonlyMap<number, number>;
}

/**
 * `update` (local content of `doc`) as the relay may get it:
 * - without the structs of refused client ids;
 * - with their deletion ranges cut to the clocks below what the relay holds of them (deleting
 *   there is collaboration; deleting past it would wait for structs the relay never gets);
 * - with references to refused structs replaced, since the relay has none of ours (it may hold
 *   another identity's structs at those ids): a left origin by the nearest item to its left in
 *   `doc` that is not refused, a right origin by the nearest one to its right (the refused
 *   items in between are deleted copies, invisible: the visible position is the same), a parent
 *   by the copy of that parent. Yjs picks deleted neighbours as origins (text inserts skip
 *   rightward over deleted items), so new edits next to the deleted originals do refer to them.
 * Returns `update` itself when none of this applies.
 */
export function withoutClients(doc: Y.Doc, update: Uint8Array, refused: Refused): Uint8Array {
  const { structs, ds } = Y.decodeUpdate(update);
  const isRefused = (id: Y.ID | null): id is Y.ID => id !== null && refused.held.has(id.client);
  let changed = false;
  const kept: Struct[] = [];
  for (const s of structs) {
    if (refused.held.has(s.id.client)) {
      changed = true;
      continue;
    }
    kept.push(s);
    if (!(s instanceof Y.Item)) continue;
    const parentId = s.parent instanceof Y.ID ? s.parent : null;
    if (!isRefused(s.origin) && !isRefused(s.rightOrigin) && !isRefused(parentId)) continue;
    changed = true;
    if (isRefused(s.origin)) s.origin = neighbourOutside(doc, s.origin, 'left', refused.held);
    if (isRefused(s.rightOrigin)) s.rightOrigin = neighbourOutside(doc, s.rightOrigin, 'right', refused.held);
    if (isRefused(parentId)) s.parent = Y.createID(refused.copies.get(parentId.client) ?? parentId.client, parentId.clock);
    if (s.origin === null && s.rightOrigin === null && s.parent === null) {
      // Without origins an item names its parent (and key): take them from the local item.
      const local = Y.getItem(doc.store, s.id) as Y.Item;
      const type = local.parent as Y.AbstractType<unknown>;
      const item = type._item;
      if (item === null) s.parent = Y.findRootTypeKey(type) as unknown as Y.ID;
      else s.parent = isRefused(item.id) ? Y.createID(refused.copies.get(item.id.client) ?? item.id.client, item.id.clock) : item.id;
      s.parentSub = local.parentSub;
    }
  }
  const deletions = new Map<number, { clock: number; len: number }[]>();
  for (const [client, ranges] of ds.clients) {
    const below = refused.held.get(client);
    if (below === undefined) {
      deletions.set(client, ranges);
      continue;
    }
    const cut: { clock: number; len: number }[] = [];
    for (const r of ranges) {
      const end = Math.min(r.clock + r.len, below);
      if (end > r.clock) cut.push({ clock: r.clock, len: end - r.clock });
      if (end !== r.clock + r.len) changed = true;
    }
    if (cut.length > 0) deletions.set(client, cut);
  }
  return changed ? encodeV1(kept, deletions) : update;
}

/**
 * The id to refer to instead of the refused struct `id`: the nearest item of `doc` on that side
 * that is not refused (its last clock on the left, its first on the right), or null.
 */
function neighbourOutside(doc: Y.Doc, id: Y.ID, side: 'left' | 'right', refused: ReadonlyMap<number, number>): Y.ID | null {
  const start = Y.getItem(doc.store, id);
  let item: Y.Item | null = start instanceof Y.Item ? start : null;
  while (item !== null && refused.has(item.id.client)) item = side === 'left' ? item.left : item.right;
  if (item === null) return null;
  return side === 'left' ? Y.createID(item.id.client, item.id.clock + item.length - 1) : item.id;
}

/** Writes structs (grouped by client id in their order) and deletions as a v1 update. */
function encodeV1(structs: Struct[], deletions: Map<number, { clock: number; len: number }[]>): Uint8Array {
  const byClient = new Map<number, Struct[]>();
  for (const s of structs) {
    let list = byClient.get(s.id.client);
    if (!list) byClient.set(s.id.client, (list = []));
    list.push(s);
  }
  const encoder = new Y.UpdateEncoderV1();
  const rest = encoder.restEncoder;
  encoding.writeVarUint(rest, byClient.size);
  for (const [client, list] of byClient) {
    list.sort((a, b) => a.id.clock - b.id.clock);
    encoding.writeVarUint(rest, list.length);
    encoder.writeClient(client);
    encoding.writeVarUint(rest, list[0]!.id.clock);
    for (const s of list) s.write(encoder, 0);
  }
  encoding.writeVarUint(rest, deletions.size);
  for (const [client, ranges] of deletions) {
    encoding.writeVarUint(rest, client);
    encoding.writeVarUint(rest, ranges.length);
    for (const r of ranges) {
      encoder.writeDsClock(r.clock);
      encoder.writeDsLen(r.len);
    }
  }
  return encoder.toUint8Array();
}
