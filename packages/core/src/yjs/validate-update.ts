import * as Y from 'yjs';
import { ProtocolError } from '../errors.js';

/**
 * Fully decodes a Yjs (v1) update without applying it, so a garbage or truncated update is
 * refused before it can half-apply to a document. Throws `ProtocolError('invalid-update')`.
 *
 * Decoding catches malformed and truncated updates; an update that decodes but fails to
 * integrate is caught where it is applied (see the relay's document).
 */
export function validateUpdate(update: Uint8Array): void {
  try {
    Y.decodeUpdate(update);
  } catch (err) {
    throw new ProtocolError('invalid-update', `update does not decode: ${(err as Error).message}`, { cause: err });
  }
}

/** True for the two-byte update that carries nothing (no structs, empty delete set). */
export function isEmptyUpdate(update: Uint8Array): boolean {
  return update.length === 2 && update[0] === 0 && update[1] === 0;
}
