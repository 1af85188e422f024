/**
 * The bytes the load clients put on the wire and look for in what comes back.
 *
 * Clients speak the standard y-websocket protocol by hand (lib0 varints), so the same client
 * works against every server under test:
 *   [0 sync][0 step1][varUint8Array stateVector]
 *   [0 sync][2 update][varUint8Array update]
 *
 * Every update a client sends inserts one marker string `~<client>:<seq>:<sendMicros>;` into a
 * Y.Text. Yjs stores string content verbatim (UTF-8, here plain ASCII), so receivers find the
 * markers by scanning the raw frame, without decoding the update and without a Y.Doc. That
 * also works when a relay merged several updates into one message.
 */
import * as encoding from 'lib0/encoding';

const MESSAGE_SYNC = 0;
const SYNC_STEP_1 = 0;
const SYNC_UPDATE = 2;

/** Wraps a Yjs update in a y-websocket sync-update message. */
export function encodeUpdateMessage(update: Uint8Array): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MESSAGE_SYNC);
  encoding.writeVarUint(e, SYNC_UPDATE);
  encoding.writeVarUint8Array(e, update);
  return encoding.toUint8Array(e);
}

/**
 * A sync step 1 with an empty state vector. The raw broadcast server sends these constant
 * bytes as its greeting, so clients can wait for "the server registered me" the same way
 * for every server.
 */
export const EMPTY_SYNC_STEP_1: Uint8Array = Uint8Array.of(MESSAGE_SYNC, SYNC_STEP_1, 1, 0);

/** True for a server's sync step 1, the message that says it registered the connection. */
export function isSyncStep1(frame: Uint8Array): boolean {
  return frame.length >= 2 && frame[0] === MESSAGE_SYNC && frame[1] === SYNC_STEP_1;
}

/** True for a sync-update message (not step 1/2, not awareness or extension messages). */
export function isUpdateMessage(frame: Uint8Array): boolean {
  return frame.length >= 2 && frame[0] === MESSAGE_SYNC && frame[1] === SYNC_UPDATE;
}

/** The marker a client inserts for its `seq`-th update, sent at `sendMicros`. */
export function marker(client: number, seq: number, sendMicros: number): string {
  return `~${client}:${seq}:${sendMicros};`;
}

/** Receives each marker found in a frame. */
export type MarkerVisitor = (client: number, seq: number, sendMicros: number) => void;

const TILDE = 0x7e;
const COLON = 0x3a;
const SEMICOLON = 0x3b;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/**
 * Calls `visit` for every well-formed marker in `frame` (from byte `from`), in order, and
 * returns how many it found. A stray `~` in binary data is skipped unless it starts the full
 * `~digits:digits:digits;` shape.
 */
export function scanMarkers(frame: Uint8Array, from: number, visit: MarkerVisitor): number {
  let found = 0;
  const end = frame.length;
  let i = frame.indexOf(TILDE, from);
  while (i !== -1) {
    let p = i + 1;
    let client = 0;
    let seq = 0;
    let micros = 0;
    let field = 0;
    let digits = 0;
    let ok = false;
    while (p < end) {
      const b = frame[p]!;
      if (b >= DIGIT_0 && b <= DIGIT_9) {
        const d = b - DIGIT_0;
        if (field === 0) client = client * 10 + d;
        else if (field === 1) seq = seq * 10 + d;
        else micros = micros * 10 + d;
        digits++;
      } else if (b === COLON && digits > 0 && field < 2) {
        field++;
        digits = 0;
      } else {
        ok = b === SEMICOLON && digits > 0 && field === 2;
        break;
      }
      p++;
    }
    if (ok) {
      visit(client, seq, micros);
      found++;
      i = frame.indexOf(TILDE, p + 1);
    } else {
      i = frame.indexOf(TILDE, i + 1);
    }
  }
  return found;
}
