import * as decoding from 'lib0/decoding';
import { ProtocolError } from '../errors.js';

/** One client's entry in an awareness update. `state` is null when the client left. */
export interface AwarenessEntry {
  clientID: number;
  clock: number;
  state: unknown;
  /** Bytes of the state's JSON as received (what `--max-awareness-state-bytes` bounds). */
  stateBytes: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Most entries one awareness update may carry: one per client, so generous. */
const MAX_ENTRIES = 10_000;

/**
 * Decodes an awareness update (y-protocols format) completely, including every JSON state,
 * so a malformed one is refused before any of it is applied.
 * Throws `ProtocolError('invalid-awareness')`.
 */
export function decodeAwarenessUpdate(update: Uint8Array): AwarenessEntry[] {
  try {
    const d = decoding.createDecoder(update);
    const n = decoding.readVarUint(d);
    if (n > MAX_ENTRIES) throw new Error(`${n} entries (max ${MAX_ENTRIES})`);
    const entries: AwarenessEntry[] = [];
    for (let i = 0; i < n; i++) {
      const clientID = decoding.readVarUint(d);
      const clock = decoding.readVarUint(d);
      const json = decoding.readVarUint8Array(d);
      const state: unknown = JSON.parse(utf8.decode(json));
      entries.push({ clientID, clock, state, stateBytes: json.byteLength });
    }
    if (decoding.hasContent(d)) throw new Error('trailing bytes');
    return entries;
  } catch (err) {
    throw new ProtocolError('invalid-awareness', `awareness update does not decode: ${(err as Error).message}`, { cause: err });
  }
}
