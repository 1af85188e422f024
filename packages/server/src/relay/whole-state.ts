import * as Y from 'yjs';
import { CHUNK_BYTES, encodeIntegratedState, isEmptyUpdate } from '@capsync/core';
import { splitUpdate } from './state-pieces.js';

/** Most changes kept on top of the last encoding before they are dropped (and encoded anew on the next read). */
export const MAX_STATE_PARTS = 64;
/** Bytes of updates always allowed on top of the last encoding (more: up to its own size again). */
const LOOSE_PART_BYTES = 16 * 1024 * 1024;
/**
 * Parts larger than this are kept split into updates of about this size (splitUpdate), so a
 * reader applies a large state in short tasks. Four chunks of a multiplexed socket with room
 * for the message and piece headers: each piece still goes as chunks, which its flow control
 * paces, and a 10 MB state is 40 messages.
 */
export const STATE_PIECE_BYTES = 4 * CHUNK_BYTES - 256;
/**
 * Kept changes added since the last read are merged, consecutive ones up to this many bytes
 * into one update, when read (`updates`): each was a message and a Yjs transaction for every
 * reader, so a document opened after 60 small edits was 61 messages to apply. Each change is
 * merged once (what was read stays as it was read): re-merging a 64 KiB run of tiny structs
 * after every change cost ~3-8 ms per read (review), 20 times a read of the parts.
 */
const MERGED_PART_BYTES = 64 * 1024;

/**
 * A document's whole integrated state, kept as updates that give it when applied in order —
 * the last full encoding, then every change since (as Yjs encoded it: integrated structs
 * only) — so a reader that has nothing yet (a client opening the document, a join storm of
 * them, an HTTP GET) is answered without encoding the document again. Encoding a 10 MB
 * document holds the relay's event loop for ~80 ms, during which no other document is served;
 * a document that was empty when watched (created on this relay) is never encoded whole at all
 * while its changes stay within the bounds below.
 *
 * Memory: the parts are dropped (the next whole read then encodes anew and starts over from
 * that) at the first change that deletes anything (what was kept may then be dead: an
 * overwritten map value, deleted text; so what is kept is content the document still holds),
 * once there are more than MAX_STATE_PARTS changes, or once they hold more bytes than the
 * encoding plus LOOSE_PART_BYTES; and with the document. A large part is kept split into
 * pieces (STATE_PIECE_BYTES; cut when it is added, so a reader's answer does not pay for it).
 * Readers that have part of the state
 * (a state vector with entries) get their own diff, as before. The bytes are shared: callers
 * copy them (into a message), never change them.
 */
export class WholeState {
  /** The state as updates in apply order, or null when not known (encode on the next read). */
  private parts: Uint8Array[] | null = null;
  /** The state as one update, for `encode`, until the next change. */
  private whole: Uint8Array | null = null;
  /** Bytes of the full encoding `parts` starts with (0 when it starts empty). */
  private baseBytes = 0;
  /** Parts before this index were read already: merged as far as they will be. */
  private settled = 0;
  /** Changes kept on top of the encoding, and their bytes. */
  private changes = 0;
  private changeBytes = 0;

  /** The document changed (its `update` event: what integrated, and the transaction). */
  readonly changed = (update: Uint8Array, _origin: unknown, _doc: unknown, transaction?: Y.Transaction): void => {
    this.whole = null;
    if (this.parts === null) return;
    // A change that deletes makes content kept before dead weight (an overwritten map value, a
    // deleted paragraph) that a fresh replica would download and the relay keep: encode anew.
    if (transaction === undefined || transaction.deleteSet.clients.size > 0) {
      this.parts = null;
      return;
    }
    this.changes++;
    this.changeBytes += update.byteLength;
    if (this.changes > MAX_STATE_PARTS || this.changeBytes > this.baseBytes + LOOSE_PART_BYTES) {
      this.parts = null;
      return;
    }
    for (const piece of splitUpdate(update, STATE_PIECE_BYTES)) this.parts.push(piece);
  };

  /** Follows `doc`'s changes (and forgets what was kept of a document before it). */
  watch(doc: Y.Doc): void {
    // A document with nothing in it (integrated or waiting) is the empty list of changes.
    const empty = doc.store.clients.size === 0 && doc.store.pendingStructs === null && doc.store.pendingDs === null;
    this.reset(empty ? [] : null, 0);
    doc.on('update', this.changed);
  }

  unwatch(doc: Y.Doc): void {
    doc.off('update', this.changed);
    this.reset(null, 0);
  }

  /** `doc`'s integrated state as one update, or what a reader with `stateVector` lacks of it. */
  encode(doc: Y.Doc, stateVector?: Uint8Array): Uint8Array {
    if (stateVector !== undefined && !isEmptyStateVector(stateVector)) return encodeIntegratedState(doc, stateVector);
    if (this.whole === null) {
      this.whole = this.encodeWhole(doc);
    }
    return this.whole;
  }

  /**
   * `doc`'s integrated state as updates to apply in order (at least one), or what a reader
   * with `stateVector` lacks of it (one update): for a sync step 2, sent as updates and then
   * the step 2 with the last.
   */
  updates(doc: Y.Doc, stateVector?: Uint8Array): readonly Uint8Array[] {
    if (stateVector !== undefined && !isEmptyStateVector(stateVector)) return [encodeIntegratedState(doc, stateVector)];
    const parts = this.parts;
    if (parts !== null && parts.length > 0) {
      if (parts.length - this.settled > 1) this.parts = parts.slice(0, this.settled).concat(mergeSmallRuns(parts.slice(this.settled)));
      this.settled = this.parts!.length;
      return this.parts!.slice();
    }
    const encoded = this.encodeWhole(doc);
    this.settled = this.parts!.length;
    return this.parts!.length > 0 ? this.parts!.slice() : [encoded];
  }

  /**
   * Encodes the state, which the parts start over from. An empty document's parts are the empty
   * list: its encoding kept as the first part would go out as an empty message ahead of every
   * later answer's content (a document read once before its first edit, as every new one is).
   */
  private encodeWhole(doc: Y.Doc): Uint8Array {
    const encoded = encodeIntegratedState(doc);
    if (isEmptyUpdate(encoded)) this.reset([], 0);
    else this.reset(splitUpdate(encoded, STATE_PIECE_BYTES), encoded.byteLength);
    return encoded;
  }

  private reset(parts: Uint8Array[] | null, baseBytes: number): void {
    this.whole = null;
    this.parts = parts;
    this.baseBytes = baseBytes;
    this.settled = 0;
    this.changes = 0;
    this.changeBytes = 0;
  }
}

/**
 * `parts` with each run of consecutive parts that together hold at most MERGED_PART_BYTES
 * merged into one update (Y.mergeUpdates: the same state, applied at once). Larger parts (the
 * pieces of a split encoding or change) stay as they are.
 */
function mergeSmallRuns(parts: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let run: Uint8Array[] = [];
  let runBytes = 0;
  const endRun = (): void => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) out.push(...mergedOrAsIs(run));
    run = [];
    runBytes = 0;
  };
  for (const part of parts) {
    if (runBytes + part.byteLength > MERGED_PART_BYTES) endRun();
    run.push(part);
    runBytes += part.byteLength;
  }
  endRun();
  return out;
}

/** `run` merged into one update; as it is should Yjs fail to merge it (then the reader applies them one by one, as before). */
function mergedOrAsIs(run: Uint8Array[]): Uint8Array[] {
  try {
    return [Y.mergeUpdates(run)];
  } catch {
    return run;
  }
}

/** The state vector of a replica that has nothing (no client entries). */
function isEmptyStateVector(stateVector: Uint8Array): boolean {
  return stateVector.byteLength === 1 && stateVector[0] === 0;
}
