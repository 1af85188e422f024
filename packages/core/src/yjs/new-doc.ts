import * as Y from 'yjs';

/**
 * A new Y.Doc with a guid made from one call for 16 random bytes. Yjs makes a root document's
 * guid with lib0's uuidv4, which asks the platform for random numbers once per character (31
 * calls): measured at ~0.5 ms per document on a loaded machine, i.e. most of the CPU a relay or
 * a client spent per document when 1,000 documents were opened at once. A root document's guid
 * only has to be unique (subdocuments keep the guids their parents name).
 */
export function newDoc(options: Omit<NonNullable<ConstructorParameters<typeof Y.Doc>[0]>, 'guid'> = {}): Y.Doc {
  return new Y.Doc({ ...options, guid: randomGuid() });
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

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
  const h = (i: number): string => HEX[b[i]!]!;
  return `${h(0)}${h(1)}${h(2)}${h(3)}-${h(4)}${h(5)}-${h(6)}${h(7)}-${h(8)}${h(9)}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`;
}
