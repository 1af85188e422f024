import * as Y from 'yjs';

/**
 * A new Y.Doc with a guid made from one call for 16 random bytes. Yjs makes a root document's
 * guid with lib0's uuidv4, which asks the platform for random numbers once per character (31
 * calls): measured at ~0.5 ms per document on a loaded machine, i.e. most of the CPU a relay or
 * a client spent per document when 1,000 documents were opened at once. A root document's guid
 * only has to be unique (subdocuments keep the guids their parents name).
 */
export function newDoc(options: Omit<NonNullable<ConstructorParameters<typeof Y.Doc>[0]>, 'guid'> = {}): Y.Doc {
  // Not `{ ...options, guid }`: V8 (Node 20) makes a spread followed by more keys a slow object
  // (~3 µs to build, per document opened); Object.assign is ~0.2 µs.
  const doc = new Y.Doc(Object.assign({}, options, { guid: randomGuid() }));
  doc.emit = emitHeard;
  return doc;
}

/**
 * A Y.Doc's emit whose events cost nothing when unheard. lib0's emit makes a Map, an array and
 * an iterator for every event, heard or not, and Yjs emits six per transaction (before/after
 * transaction, observer calls, cleanup...), which the relay and the client mostly do not listen
 * to: garbage for each of the thousands of documents a client or relay opens at once. The
 * events, their order and their listeners are Yjs's own, in lib0's Sets (Yjs reads them), and
 * the same listeners are called as by lib0: a listener added during the emit is not, one
 * removed during it by an earlier listener is (several are copied first).
 * An own property of each document, not a subclass: Yjs tells a subdocument by
 * `value.constructor === Doc`, and a document made here may become one.
 */
function emitHeard(this: Y.Doc, name: string, args: unknown[]): void {
  const listeners = this._observers.get(name as never) as Set<(...args: unknown[]) => void> | undefined;
  if (listeners === undefined) return;
  if (listeners.size === 1) {
    for (const f of listeners) {
      f(...args);
      break;
    }
    return;
  }
  for (const f of Array.from(listeners)) f(...args);
}

/** Character codes of the hex digits. */
const HEX_CODES = Array.from('0123456789abcdef', (c) => c.charCodeAt(0));
/** Where a UUID's dashes go (its text positions), and the 36 character codes of one being made. */
const DASHES = new Set([8, 13, 18, 23]);
const codes = new Array<number>(36).fill(0x2d);

/**
 * Random bytes drawn 4 KiB at a time: a getRandomValues call costs ~15 µs in Node whatever its
 * size (most of it is the call), and a client opening 1,000 documents makes a guid for each.
 */
const POOL_BYTES = 4096;
let pool = new Uint8Array(0);
let poolAt = 0;

/** A random RFC 4122 version 4 UUID (the form Yjs uses), from a pool of random bytes. */
export function randomGuid(): string {
  if (poolAt + 16 > pool.byteLength) {
    pool = crypto.getRandomValues(new Uint8Array(POOL_BYTES));
    poolAt = 0;
  }
  const b = pool.subarray(poolAt, poolAt + 16);
  poolAt += 16;
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  let at = 0;
  for (let i = 0; i < 16; i++) {
    if (DASHES.has(at)) at++;
    codes[at++] = HEX_CODES[b[i]! >> 4]!;
    codes[at++] = HEX_CODES[b[i]! & 15]!;
  }
  // One flat string: a template of 20 parts is a tree of ~20 string pieces (~0.5 KB), kept as
  // long as the document (its guid).
  return String.fromCharCode(...codes);
}
