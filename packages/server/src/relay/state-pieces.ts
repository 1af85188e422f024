import { isAscii } from 'node:buffer';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';

/**
 * Splits a Yjs update (format v1) into smaller updates that give the same state when applied
 * in order, so a receiver applies a large state in many short tasks instead of one long one.
 * A 10 MB state applied at once holds a client's event loop for ~40 ms just decoding its text
 * (and the message must be put together whole first): every other document on its socket
 * waits that long. In pieces, each takes a millisecond or two and the others go in between.
 *
 * It works on the bytes (no Yjs decoding, no text decoded): structs are copied as they are,
 * between them the update is cut where a piece is full, and a string longer than a piece is
 * cut at a character boundary into consecutive items, the way Yjs itself splits an item (the
 * right part's origin is the left part's last character, its right origin the item's).
 * The deletions go with the last piece.
 *
 * A piece may need content of another client: applied before it, Yjs would hold it pending
 * (merged again with every later piece: quadratic). So the structs go in an order where each
 * comes after the content it refers to (its origins and parent), as Yjs integrates them: a
 * client's structs in clock order, and another client's in between where they refer to them
 * (two people writing into each other's text). A piece holds one run per client. Structs
 * that Yjs cannot split (a binary, one embed) stay whole, so a piece may be larger
 * than `maxBytes` by one struct. Within a piece the clients are written highest first, as
 * Yjs does (Y.mergeUpdates needs it). The input must be an update Yjs wrote (the relay's own
 * encodings and update events); a malformed one is returned whole.
 */
export function splitUpdate(update: Uint8Array, maxBytes: number): Uint8Array[] {
  if (update.byteLength <= maxBytes) return [update];
  let parsed: ParsedUpdate;
  try {
    parsed = parseUpdate(update, maxBytes);
  } catch {
    return [update];
  }
  const pieces = new PieceWriter(update, maxBytes);
  const emitted = emitInOrder(parsed.sections, (client, s) => {
    if (s.string !== null && s.end - s.start > maxBytes) pieces.addSplitString(client, s, s.string);
    else pieces.add(client, s.clock, s.start, s.end);
  });
  if (!emitted) return [update];
  return pieces.finish(update.subarray(parsed.deleteSetStart));
}

// Content refs: the low 5 bits of a struct's info byte.
const GC = 0;
const DELETED = 1;
const JSON_CONTENT = 2;
const BINARY = 3;
const STRING = 4;
const EMBED = 5;
const FORMAT = 6;
const TYPE = 7;
const ANY = 8;
const DOC = 9;
const SKIP = 10;
/** Type refs of a ContentType that carry a node name. */
const XML_ELEMENT = 3;
const XML_HOOK = 5;
const HAS_ORIGIN = 0x80;
const HAS_RIGHT_ORIGIN = 0x40;
const HAS_PARENT_SUB = 0x20;

interface StringContent {
  /** Where the item's header ends (the string's length varint starts). */
  headerEnd: number;
  /** The UTF-8 bytes. */
  bytesStart: number;
  rightOrigin: { client: number; clock: number } | null;
}

interface StructSpan {
  start: number;
  end: number;
  clock: number;
  /** Clock units it spans. */
  length: number;
  /** Set for a string item that may be cut (no parent sub). */
  string: StringContent | null;
  /** What it refers to in other clients (origins, parent), as client, clock pairs; null for none. */
  refs: number[] | null;
}

interface Section {
  client: number;
  structs: StructSpan[];
}

interface ParsedUpdate {
  sections: Section[];
  deleteSetStart: number;
}

function parseUpdate(update: Uint8Array, maxBytes: number): ParsedUpdate {
  const d = decoding.createDecoder(update);
  const sections: Section[] = [];
  const clients = decoding.readVarUint(d);
  for (let i = 0; i < clients; i++) {
    const count = decoding.readVarUint(d);
    const client = decoding.readVarUint(d);
    let clock = decoding.readVarUint(d);
    const section: Section = { client, structs: [] };
    for (let j = 0; j < count; j++) {
      const span = readStruct(d, client, clock, maxBytes);
      section.structs.push(span);
      clock += span.length;
    }
    sections.push(section);
  }
  return { sections, deleteSetStart: d.pos };
}

/** One struct at `d`; a string over `maxBytes` is marked to be cut. Allocates little: ~100,000 of them per MB of typed text. */
function readStruct(d: decoding.Decoder, client: number, clock: number, maxBytes: number): StructSpan {
  const start = d.pos;
  const info = decoding.readUint8(d);
  const ref = info & 0x1f;
  if (ref === GC || ref === SKIP) {
    const length = decoding.readVarUint(d);
    return { start, end: d.pos, clock, length, string: null, refs: null };
  }
  let refs: number[] | null = null;
  let rightClient = -1;
  let rightClock = 0;
  if (info & HAS_ORIGIN) {
    const c = decoding.readVarUint(d);
    const k = decoding.readVarUint(d);
    if (c !== client) refs = [c, k];
  }
  if (info & HAS_RIGHT_ORIGIN) {
    rightClient = decoding.readVarUint(d);
    rightClock = decoding.readVarUint(d);
    if (rightClient !== client) (refs ??= []).push(rightClient, rightClock);
  }
  const hasOrigins = (info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN)) !== 0;
  if (!hasOrigins) {
    // The parent: a root type's name, or the item of the type it is in.
    if (decoding.readVarUint(d) === 1) skipString(d);
    else {
      const c = decoding.readVarUint(d);
      const k = decoding.readVarUint(d);
      if (c !== client) refs = [c, k];
    }
    if (info & HAS_PARENT_SUB) skipString(d);
  }
  const headerEnd = d.pos;
  let length = 1;
  let string: StringContent | null = null;
  switch (ref) {
    case DELETED:
      length = decoding.readVarUint(d);
      break;
    case JSON_CONTENT:
      length = decoding.readVarUint(d);
      for (let k = 0; k < length; k++) skipString(d);
      break;
    case BINARY:
    case EMBED:
      skipString(d);
      break;
    case STRING: {
      const n = decoding.readVarUint(d);
      const bytesStart = d.pos;
      if (bytesStart + n > d.arr.byteLength) throw new Error('string past the end');
      d.pos += n;
      length = utf16Length(d.arr, bytesStart, d.pos);
      // An item with a parent sub is a map entry: Yjs never cuts those.
      if (d.pos - start > maxBytes && (hasOrigins || !(info & HAS_PARENT_SUB))) {
        string = { headerEnd, bytesStart, rightOrigin: rightClient === -1 ? null : { client: rightClient, clock: rightClock } };
      }
      break;
    }
    case FORMAT:
      skipString(d);
      skipString(d);
      break;
    case TYPE: {
      const typeRef = decoding.readVarUint(d);
      if (typeRef === XML_ELEMENT || typeRef === XML_HOOK) skipString(d);
      break;
    }
    case ANY:
      length = decoding.readVarUint(d);
      for (let k = 0; k < length; k++) decoding.readAny(d);
      break;
    case DOC:
      skipString(d);
      decoding.readAny(d);
      break;
    default:
      throw new Error(`unknown content ${ref}`);
  }
  return { start, end: d.pos, clock, length, string, refs };
}

/** A varString is a varUint8Array of UTF-8: skipped without decoding it. */
function skipString(d: decoding.Decoder): void {
  decoding.readVarUint8Array(d);
}

/** The length in UTF-16 code units (Yjs's clock units for text) of the UTF-8 in `bytes` from `start` to `end`. */
function utf16Length(bytes: Uint8Array, start = 0, end = bytes.byteLength): number {
  // A native call costs more than a short loop (most strings are a few typed characters).
  if (end - start > 64 && isAscii(bytes.subarray(start, end))) return end - start;
  let units = 0;
  for (let i = start; i < end; i++) {
    const b = bytes[i]!;
    // Every byte but a continuation byte starts a character; four-byte ones are two units.
    if ((b & 0xc0) !== 0x80) units += b >= 0xf0 ? 2 : 1;
  }
  return units;
}

/**
 * Hands every struct to `emit` in an order where each comes after the structs of the update it
 * refers to (what Yjs's integration of the whole update does with its stack): each client's in
 * clock order, a client waiting while its next struct refers to content of another client not
 * emitted yet. Content outside the update (before a client's first clock: there already; past
 * its last: missing for the whole update as well) does not hold anything back. False when
 * structs wait on each other (not an update Yjs wrote): the caller then returns the update
 * whole, whatever was emitted.
 */
function emitInOrder(sections: Section[], emit: (client: number, s: StructSpan) => void): boolean {
  /** Per client in the update: its next clock to emit, its end, its section and position. */
  const states = new Map<number, { next: number; end: number; section: Section; at: number }>();
  for (const section of sections) {
    const first = section.structs[0];
    const last = section.structs[section.structs.length - 1];
    if (!first || !last) continue;
    states.set(section.client, { next: first.clock, end: last.clock + last.length, section, at: 0 });
  }
  /** Clients waiting for content of a client: woken once it emitted past the clock. */
  const waiting = new Map<number, { clock: number; client: number }[]>();
  const ready: number[] = [...states.keys()];
  let left = 0;
  for (const st of states.values()) left += st.section.structs.length;
  /** The first reference of `s` not emitted yet, or null. */
  const blocker = (s: StructSpan): { client: number; clock: number } | null => {
    const refs = s.refs;
    if (refs === null) return null;
    for (let i = 0; i < refs.length; i += 2) {
      const other = states.get(refs[i]!);
      const clock = refs[i + 1]!;
      if (other && clock >= other.next && clock < other.end) return { client: refs[i]!, clock };
    }
    return null;
  };
  while (ready.length > 0) {
    const client = ready.pop()!;
    const st = states.get(client)!;
    const structs = st.section.structs;
    while (st.at < structs.length) {
      const s = structs[st.at]!;
      const wait = blocker(s);
      if (wait) {
        const list = waiting.get(wait.client) ?? [];
        list.push({ clock: wait.clock, client });
        waiting.set(wait.client, list);
        break;
      }
      emit(client, s);
      st.at++;
      left--;
      st.next = s.clock + s.length;
    }
    const woken = waiting.get(client);
    if (woken) {
      const still = woken.filter((w) => w.clock >= st.next);
      for (const w of woken) if (w.clock < st.next) ready.push(w.client);
      if (still.length > 0) waiting.set(client, still);
      else waiting.delete(client);
    }
  }
  return left === 0;
}

/** One client's run of consecutive structs in a piece: their bytes, copied or made. */
interface Run {
  client: number;
  clock: number;
  /** Structs in it. */
  count: number;
  parts: Uint8Array[];
  /** Bytes of the update not yet in `parts`, from `from` to `to` (structs next to each other there). */
  from: number;
  to: number;
}

/** Collects structs into pieces of about `maxBytes` and writes each as an update. */
class PieceWriter {
  private readonly pieces: Uint8Array[] = [];
  private runs: Run[] = [];
  /** The runs of the piece being filled, by client (a client's structs in it are consecutive). */
  private runOf = new Map<number, Run>();
  private bytes = 0;

  constructor(
    private readonly update: Uint8Array,
    private readonly maxBytes: number,
  ) {}

  add(client: number, clock: number, start: number, end: number): void {
    const run = this.runFor(client, clock, end - start);
    if (run.to !== start) {
      if (run.to > run.from) run.parts.push(this.update.subarray(run.from, run.to));
      run.from = start;
    }
    run.to = end;
    run.count++;
  }

  /** A string item too large for one piece, as consecutive items of at most a piece each. */
  addSplitString(client: number, s: StructSpan, str: StringContent): void {
    const bytes = this.update.subarray(str.bytesStart, s.end);
    let at = 0;
    let clock = s.clock;
    while (at < bytes.byteLength) {
      let cut = Math.min(bytes.byteLength, at + this.maxBytes);
      // Never inside a character: back to the byte that starts one.
      while (cut < bytes.byteLength && (bytes[cut]! & 0xc0) === 0x80) cut--;
      // A piece smaller than one character: that character whole.
      if (cut === at) for (cut = at + 1; cut < bytes.byteLength && (bytes[cut]! & 0xc0) === 0x80; ) cut++;
      const text = bytes.subarray(at, cut);
      const e = encoding.createEncoder();
      if (at === 0) {
        encoding.writeUint8Array(e, this.update.subarray(s.start, str.headerEnd));
      } else {
        // The right part of a cut: after the left part's last unit, before what the item was before.
        encoding.writeUint8(e, STRING | HAS_ORIGIN | (str.rightOrigin ? HAS_RIGHT_ORIGIN : 0));
        encoding.writeVarUint(e, client);
        encoding.writeVarUint(e, clock - 1);
        if (str.rightOrigin) {
          encoding.writeVarUint(e, str.rightOrigin.client);
          encoding.writeVarUint(e, str.rightOrigin.clock);
        }
      }
      encoding.writeVarUint8Array(e, text);
      this.push(client, clock, encoding.toUint8Array(e));
      clock += utf16Length(text);
      at = cut;
    }
  }

  private push(client: number, clock: number, struct: Uint8Array): void {
    const run = this.runFor(client, clock, struct.byteLength);
    if (run.to > run.from) run.parts.push(this.update.subarray(run.from, run.to));
    run.from = run.to = 0;
    run.parts.push(struct);
    run.count++;
  }

  /** The run of `client` in the piece that a struct of `bytes` goes in (a new piece when this one is full). */
  private runFor(client: number, clock: number, bytes: number): Run {
    if (this.bytes > 0 && this.bytes + bytes > this.maxBytes) this.flush(null);
    this.bytes += bytes;
    let run = this.runOf.get(client);
    if (!run) {
      run = { client, clock, count: 0, parts: [], from: 0, to: 0 };
      this.runs.push(run);
      this.runOf.set(client, run);
    }
    return run;
  }

  private flush(deleteSet: Uint8Array | null): void {
    const e = encoding.createEncoder();
    // Highest client first, as Yjs writes an update: Y.mergeUpdates relies on that order (given
    // a piece with its clients ascending, it dropped a client's structs; WholeState merges pieces
    // with the changes after them). Yjs's apply does not care.
    this.runs.sort((x, y) => y.client - x.client);
    encoding.writeVarUint(e, this.runs.length);
    for (const run of this.runs) {
      encoding.writeVarUint(e, run.count);
      encoding.writeVarUint(e, run.client);
      encoding.writeVarUint(e, run.clock);
      for (const p of run.parts) encoding.writeUint8Array(e, p);
      if (run.to > run.from) encoding.writeUint8Array(e, this.update.subarray(run.from, run.to));
    }
    if (deleteSet) encoding.writeUint8Array(e, deleteSet);
    else encoding.writeVarUint(e, 0);
    this.pieces.push(encoding.toUint8Array(e));
    this.runs = [];
    this.runOf = new Map();
    this.bytes = 0;
  }

  finish(deleteSet: Uint8Array): Uint8Array[] {
    this.flush(deleteSet);
    return this.pieces;
  }
}
