import * as Y from 'yjs';
import { newDoc } from './new-doc.js';
import * as encoding from 'lib0/encoding';

/**
 * Encodes a document's integrated content only, leaving out structs and deletions Yjs holds
 * back as pending (missing dependencies).
 *
 * Why: `Y.encodeStateAsUpdate` merges pending structs into its output. Pending structs come
 * straight from the network and can be forged (an id that collides with integrated content,
 * a parent that does not exist); merged in, they can displace real content or produce an
 * update no Yjs document can apply. Integrated content was checked by Yjs on the way in.
 * Yjs does not export its pending-free encoder, so the pending fields are set aside for the
 * duration of the (synchronous) call.
 */
export function encodeIntegratedState(doc: Y.Doc, targetStateVector?: Uint8Array): Uint8Array {
  const store = doc.store;
  const { pendingStructs, pendingDs } = store;
  if (pendingStructs === null && pendingDs === null) return Y.encodeStateAsUpdate(doc, targetStateVector);
  store.pendingStructs = null;
  store.pendingDs = null;
  try {
    return Y.encodeStateAsUpdate(doc, targetStateVector);
  } finally {
    store.pendingStructs = pendingStructs;
    store.pendingDs = pendingDs;
  }
}

/**
 * The entries of `doc`'s state vector for `clients` only, encoded like `Y.encodeStateVector`
 * (a client the document does not have is encoded with clock 0). Costs what `clients` holds,
 * not what the document holds: for acks of updates that wrote those clients.
 */
export function encodeStateVectorOf(doc: Y.Doc, clients: Iterable<number>): Uint8Array {
  const entries: [number, number][] = [];
  for (const client of clients) entries.push([client, Y.getState(doc.store, client)]);
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, entries.length);
  for (const [client, clock] of entries) {
    encoding.writeVarUint(encoder, client);
    encoding.writeVarUint(encoder, clock);
  }
  return encoding.toUint8Array(encoder);
}

/** Bytes of the content Yjs holds back for missing dependencies (0 when none). */
export function pendingBytes(doc: Y.Doc): number {
  return (doc.store.pendingStructs?.update.byteLength ?? 0) + (doc.store.pendingDs?.byteLength ?? 0);
}

/** Drops the content Yjs holds back for missing dependencies (see `hasPending`). */
export function dropPending(doc: Y.Doc): void {
  doc.store.pendingStructs = null;
  doc.store.pendingDs = null;
}

/** True when Yjs holds structs or deletions of `doc` back for missing dependencies. */
export function hasPending(doc: Y.Doc): boolean {
  return doc.store.pendingStructs !== null || doc.store.pendingDs !== null;
}

export interface Snapshot {
  update: Uint8Array;
  /** True when pending content failed verification and was left out. */
  droppedPending: boolean;
}

/**
 * A snapshot of `doc` that provably loads back to the same integrated content, or null.
 *
 * Without pending content the full encoding is trusted. With pending content, the full
 * encoding (which keeps pending structs, so they integrate once their dependencies arrive)
 * is applied to a fresh document and compared with the integrated content; if it throws or
 * differs, the pending part is corrupt and the integrated content alone is the snapshot.
 */
export function verifiedSnapshot(doc: Y.Doc): Snapshot | null {
  if (!hasPending(doc)) return { update: Y.encodeStateAsUpdate(doc), droppedPending: false };
  const integrated = encodeIntegratedState(doc);
  const reference = integratedAfterApplying(integrated);
  if (reference === null) return null;
  const full = Y.encodeStateAsUpdate(doc);
  const roundTrip = integratedAfterApplying(full);
  if (roundTrip !== null && bytesEqual(roundTrip, reference)) return { update: full, droppedPending: false };
  return { update: integrated, droppedPending: true };
}

/** Applies `update` to a fresh document and returns its integrated encoding, or null if it throws. */
function integratedAfterApplying(update: Uint8Array): Uint8Array | null {
  const doc = newDoc();
  try {
    Y.applyUpdate(doc, update);
    return encodeIntegratedState(doc);
  } catch {
    return null;
  } finally {
    doc.destroy();
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Builds a document from stored updates, skipping any update that makes Yjs throw (it would
 * leave the document half-applied, so the build restarts without it). Returns the document
 * and the indexes of skipped updates; a healthy store skips none.
 */
export function docFromUpdates(updates: Uint8Array[], options?: { gc?: boolean }): { doc: Y.Doc; skipped: number[] } {
  const skipped = new Set<number>();
  for (;;) {
    const doc = newDoc(options);
    let failedAt = -1;
    for (let i = 0; i < updates.length; i++) {
      if (skipped.has(i)) continue;
      try {
        Y.applyUpdate(doc, updates[i]!);
      } catch {
        failedAt = i;
        break;
      }
    }
    if (failedAt === -1) return { doc, skipped: [...skipped] };
    doc.destroy();
    skipped.add(failedAt);
  }
}
