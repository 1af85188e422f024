import * as Y from 'yjs';
import { encodeIntegratedState } from '@capsync/core';

/**
 * A document's whole integrated state, encoded once and kept until the document changes. Every
 * reader that has nothing yet (a client opening the document, a join storm of them, an HTTP
 * GET) is answered from the one encoding instead of one each: encoding a 10 MB document holds
 * the relay's event loop for ~100 ms, during which no other document is served.
 *
 * Memory: one encoded copy per loaded document read since its last change (dropped at the next
 * change, and with the document). Readers that have part of it (a state vector with entries)
 * get their own diff, as before. The bytes are shared: callers copy them (into a message), never
 * change them.
 */
export class WholeState {
  private encoded: Uint8Array | null = null;

  /** The document changed (its `update` event): the encoding is stale. */
  readonly changed = (): void => {
    this.encoded = null;
  };

  /** Follows `doc`'s changes (and forgets what was encoded of a document before it). */
  watch(doc: Y.Doc): void {
    this.encoded = null;
    doc.on('update', this.changed);
  }

  unwatch(doc: Y.Doc): void {
    doc.off('update', this.changed);
    this.encoded = null;
  }

  /** `doc`'s integrated state as an update, or what a reader with `stateVector` lacks of it. */
  encode(doc: Y.Doc, stateVector?: Uint8Array): Uint8Array {
    if (stateVector !== undefined && !isEmptyStateVector(stateVector)) return encodeIntegratedState(doc, stateVector);
    return (this.encoded ??= encodeIntegratedState(doc));
  }
}

/** The state vector of a replica that has nothing (no client entries). */
function isEmptyStateVector(stateVector: Uint8Array): boolean {
  return stateVector.byteLength === 1 && stateVector[0] === 0;
}
