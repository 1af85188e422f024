import * as Y from 'yjs';
import { ProtocolError } from '../errors.js';

/**
 * Fully decodes a Yjs (v1) update without applying it, so a garbage or truncated update is
 * refused before it can half-apply to a document. Throws `ProtocolError('invalid-update')`.
 * Returns the decoded structs for further checks.
 */
export function validateUpdate(update: Uint8Array): ReturnType<typeof Y.decodeUpdate> {
  try {
    return Y.decodeUpdate(update);
  } catch (err) {
    throw new ProtocolError('invalid-update', `update does not decode: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * `validateUpdate`, plus the checks Yjs leaves to the sender's honesty, against the document
 * the update is for. Yjs trusts its peers: a forged struct can make integration throw half-way
 * (leaving the document half-applied) or sit pending forever and displace real content in
 * every later encoding. No Yjs client produces these, so they are refused:
 *
 * - a reference (origin, right origin, parent) to the struct's own client at or after its own
 *   clock: clients only build on what they already have;
 * - a parent that is known but is not a shared type (nor a deleted, garbage-collected one);
 * - a struct the document already has, with a dependency the document does not have: the
 *   document integrated the real one, so it had all of its dependencies;
 * - an empty struct or deletion range, or clocks past 2^53 (where ranges lose precision).
 *
 * Throws `ProtocolError('invalid-update')`. Returns the decoded update for further checks.
 */
export function validateUpdateFor(doc: Y.Doc, update: Uint8Array): ReturnType<typeof Y.decodeUpdate> {
  const decoded = validateUpdate(update);
  const { structs, ds } = decoded;
  const store = doc.store;
  const fail = (why: string): never => {
    throw new ProtocolError('invalid-update', `forged or corrupt update: ${why}`);
  };
  // Yjs cannot re-encode an empty deletion range it has to keep pending, and throws after
  // the structs were integrated.
  for (const [client, ranges] of ds.clients) {
    for (const r of ranges) {
      if (!(r.len > 0)) fail(`empty deletion range at ${client}:${r.clock}`);
      if (r.clock + r.len > Number.MAX_SAFE_INTEGER) fail(`deletion range past 2^53 at ${client}:${r.clock}`);
    }
  }
  // Clocks past 2^53 lose precision: ranges collapse to nothing and Yjs throws mid-apply.
  // An empty struct (Yjs never writes one) turns into an empty range in the document's pending
  // delete set, and from then on every encoding of the document fails to load back.
  for (const s of structs) {
    if (!(s.length > 0)) fail(`empty struct at ${s.id.client}:${s.id.clock}`);
    if (s.id.clock + s.length > Number.MAX_SAFE_INTEGER) fail(`struct ${s.id.client}:${s.id.clock} runs past clock 2^53`);
  }
  // Structs of this update by client, to resolve references within the update itself.
  const inUpdate = new Map<number, (Y.Item | Y.GC | Y.Skip)[]>();
  for (const s of structs) {
    let list = inUpdate.get(s.id.client);
    if (!list) inUpdate.set(s.id.client, (list = []));
    list.push(s);
  }
  for (const list of inUpdate.values()) list.sort((a, b) => a.id.clock - b.id.clock);
  // Binary search: a burst merged into one update holds tens of thousands of structs.
  const findInUpdate = (id: Y.ID): Y.Item | Y.GC | Y.Skip | undefined => {
    const list = inUpdate.get(id.client);
    if (!list) return undefined;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = list[mid]!;
      if (id.clock < s.id.clock) hi = mid - 1;
      else if (id.clock >= s.id.clock + s.length) lo = mid + 1;
      else return s;
    }
    return undefined;
  };
  const knownInDoc = (id: Y.ID): boolean => id.clock < Y.getState(store, id.client);

  for (const s of structs) {
    if (!(s instanceof Y.Item)) continue;
    const { client, clock } = s.id;
    const parentId = s.parent instanceof Y.ID ? s.parent : null;
    const refs = [s.origin, s.rightOrigin, parentId].filter((r): r is Y.ID => r !== null);
    for (const ref of refs) {
      if (ref.client === client && ref.clock >= clock) fail(`struct ${client}:${clock} refers to its own future ${ref.clock}`);
    }
    if (parentId) {
      const parent = knownInDoc(parentId) ? Y.getItem(store, parentId) : findInUpdate(parentId);
      // A deleted type whose content was garbage-collected (ContentDeleted) is a legitimate
      // parent: a peer edited inside it concurrently with the deletion, and Yjs integrates
      // such an edit as a GC struct.
      if (parent instanceof Y.Item && !(parent.content instanceof Y.ContentType) && !(parent.content instanceof Y.ContentDeleted)) {
        fail(`parent ${parentId.client}:${parentId.clock} of ${client}:${clock} is not a shared type`);
      }
    }
    if (clock < Y.getState(store, client)) {
      for (const ref of refs) {
        if (!knownInDoc(ref)) fail(`known struct ${client}:${clock} depends on unknown ${ref.client}:${ref.clock}`);
      }
    }
  }
  return decoded;
}

/** True for the two-byte update that carries nothing (no structs, empty delete set). */
export function isEmptyUpdate(update: Uint8Array): boolean {
  return update.length === 2 && update[0] === 0 && update[1] === 0;
}
