/**
 * Unsigned varints written straight into a preallocated buffer, byte for byte as lib0's
 * `writeVarUint` writes them (7 bits per byte, low first, high bit set on all but the last).
 * For the encoders that size a message first and fill it in one allocation (a frame's sid, a
 * batch's frame lengths, a payload message's length), where lib0's growing encoder would copy.
 */

/** Bytes `n` (a non-negative safe integer) takes as a varint. */
export function varUintSize(n: number): number {
  let size = 1;
  for (let rest = n; rest >= 0x80; rest = Math.floor(rest / 0x80)) size++;
  return size;
}

/** Writes `n` as a varint at `at` in `out`; returns the position after it. */
export function writeVarUintAt(out: Uint8Array, at: number, n: number): number {
  let rest = n;
  while (rest >= 0x80) {
    out[at++] = 0x80 | (rest % 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out[at++] = rest;
  return at;
}
