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

/**
 * `update` without the structs of the client ids in `refused`, and with their deletion ranges
 * cut to the clocks below `refused.get(id)` (what the relay holds of that id: deleting there
 * is collaboration, deleting past it would wait for structs the relay never gets). Returns
 * `update` itself when it holds nothing of those client ids (an empty update when nothing else
 * is left, so a sync step 2 still goes out and is acknowledged).
 */
export function withoutClients(update: Uint8Array, refused: ReadonlyMap<number, number>): Uint8Array {
  const { structs, ds } = Y.decodeUpdate(update);
  let changed = false;
  const kept: Struct[] = [];
  for (const s of structs) {
    if (refused.has(s.id.client)) changed = true;
    else kept.push(s);
  }
  const deletions = new Map<number, { clock: number; len: number }[]>();
  for (const [client, ranges] of ds.clients) {
    const below = refused.get(client);
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
