/**
 * The two wire protocols the cluster benchmark's raw clients speak. Both carry Yjs sync
 * messages (y-protocols); Hocuspocus puts the document's name in front of every message (one
 * socket can carry several documents) and wants an auth message before anything else.
 *
 *   y-websocket (capsync relay, at ws://host/<doc>): [0 sync][2 update][varUint8Array update]
 *   Hocuspocus (ws://host/):                          [varString doc][0 sync][2 update][varUint8Array update]
 *
 * Receivers never decode updates: they scan the frame for the markers of wire.ts.
 */
import * as encoding from 'lib0/encoding';
import { encodeUpdateMessage, isSyncStep1, isUpdateMessage } from '../wire.js';

export interface Dialect {
  /** The WebSocket URL of `doc` on a server listening on `port`. */
  url(port: number, doc: string): string;
  /** Messages a client sends right after the socket opened. */
  hello(doc: string): Uint8Array[];
  /** True for the server's sync step 1 for `doc`: the server registered the client with the document. */
  registered(frame: Uint8Array, doc: string): boolean;
  /** A sync-update message carrying `update` for `doc`. */
  update(doc: string, update: Uint8Array): Uint8Array;
  /** Where the update of a sync-update frame starts (to scan for markers), or -1 for other frames. */
  updateAt(frame: Uint8Array): number;
}

export const yWebsocket: Dialect = {
  url: (port, doc) => `ws://127.0.0.1:${port}/${doc}`,
  hello: () => [],
  registered: (frame) => isSyncStep1(frame),
  update: (_doc, update) => encodeUpdateMessage(update),
  updateAt: (frame) => (isUpdateMessage(frame) ? 2 : -1),
};

const MESSAGE_SYNC = 0;
const MESSAGE_AUTH = 2;
const AUTH_TOKEN = 0;
const SYNC_STEP_1 = 0;
const SYNC_UPDATE = 2;

function prefixed(doc: string, write: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarString(e, doc);
  write(e);
  return encoding.toUint8Array(e);
}

/** Reads the varString at the start of `frame`: [end offset] or -1 when malformed. */
function skipVarString(frame: Uint8Array): number {
  let len = 0;
  let shift = 0;
  let i = 0;
  for (; i < frame.length; i++) {
    const b = frame[i]!;
    len += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) {
      i++;
      break;
    }
  }
  const end = i + len;
  return end <= frame.length ? end : -1;
}

export const hocuspocus: Dialect = {
  url: (port) => `ws://127.0.0.1:${port}/`,
  hello: (doc) => [
    // What @hocuspocus/provider sends first: a token (none is checked here), then sync step 1.
    prefixed(doc, (e) => {
      encoding.writeVarUint(e, MESSAGE_AUTH);
      encoding.writeVarUint(e, AUTH_TOKEN);
      encoding.writeVarString(e, '');
    }),
    prefixed(doc, (e) => {
      encoding.writeVarUint(e, MESSAGE_SYNC);
      encoding.writeVarUint(e, SYNC_STEP_1);
      encoding.writeVarUint8Array(e, Uint8Array.of(0)); // empty state vector
    }),
  ],
  registered: (frame) => {
    const at = skipVarString(frame);
    return at >= 0 && frame[at] === MESSAGE_SYNC && frame[at + 1] === SYNC_STEP_1;
  },
  update: (doc, update) =>
    prefixed(doc, (e) => {
      encoding.writeVarUint(e, MESSAGE_SYNC);
      encoding.writeVarUint(e, SYNC_UPDATE);
      encoding.writeVarUint8Array(e, update);
    }),
  updateAt: (frame) => {
    const at = skipVarString(frame);
    return at >= 0 && frame[at] === MESSAGE_SYNC && frame[at + 1] === SYNC_UPDATE ? at + 2 : -1;
  },
};
