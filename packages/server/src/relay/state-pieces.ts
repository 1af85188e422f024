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
 * (merged again with every later piece: quadratic). So the clients' parts are ordered so that
 * every client comes after the clients it refers to; when clients refer to each other both
 * ways (two people writing into each other's text), the update is left whole (one piece).
 * Structs that Yjs cannot split (a binary, one embed) stay whole too, so a piece may be larger
 * than `maxBytes` by one struct. The input must be an update Yjs wrote (the relay's own
 * encodings and update events); a malformed one is returned whole.
 */
export function splitUpdate(update: Uint8Array, maxBytes: number): Uint8Array[] {
  if (update.byteLength <= maxBytes) return [update];
  let parsed: ParsedUpdate;
  try {
    parsed = parseUpdate(update);
  } catch {
    return [update];
  }
  const order = dependencyOrder(parsed.sections);
  if (order === null) return [update];
  const pieces = new PieceWriter(update, maxBytes);
  for (const section of order) {
    for (const s of section.structs) {
      if (s.string !== null && s.end - s.start > maxBytes) pieces.addSplitString(section.client, s, s.string);
      else pieces.add(section.client, s.clock, s.start, s.end);
    }
  }
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
}

interface Section {
  client: number;
  structs: StructSpan[];
  /** Other clients its structs refer to (origins, parents). */
  refers: Set<number>;
}

interface ParsedUpdate {
  sections: Section[];
  deleteSetStart: number;
}

function parseUpdate(update: Uint8Array): ParsedUpdate {
  const d = decoding.createDecoder(update);
  const sections: Section[] = [];
  const clients = decoding.readVarUint(d);
  for (let i = 0; i < clients; i++) {
    const count = decoding.readVarUint(d);
    const client = decoding.readVarUint(d);
    let clock = decoding.readVarUint(d);
    const section: Section = { client, structs: [], refers: new Set() };
    const refer = (other: number): void => {
      if (other !== client) section.refers.add(other);
    };
    for (let j = 0; j < count; j++) {
      const span = readStruct(d, clock, refer);
      section.structs.push(span);
      clock += span.length;
    }
    sections.push(section);
  }
  return { sections, deleteSetStart: d.pos };
}

function readStruct(d: decoding.Decoder, clock: number, refer: (client: number) => void): StructSpan {
  const start = d.pos;
  const info = decoding.readUint8(d);
  const ref = info & 0x1f;
  if (ref === GC || ref === SKIP) {
    const length = decoding.readVarUint(d);
    return { start, end: d.pos, clock, length, string: null };
  }
  let rightOrigin: { client: number; clock: number } | null = null;
  if (info & HAS_ORIGIN) refer(readId(d).client);
  if (info & HAS_RIGHT_ORIGIN) refer((rightOrigin = readId(d)).client);
  const hasOrigins = (info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN)) !== 0;
  if (!hasOrigins) {
    // The parent: a root type's name, or the item of the type it is in.
    if (decoding.readVarUint(d) === 1) skipString(d);
    else refer(readId(d).client);
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
      const bytes = decoding.readVarUint8Array(d);
      length = utf16Length(bytes);
      // An item with a parent sub is a map entry: Yjs never cuts those.
      if (hasOrigins || !(info & HAS_PARENT_SUB)) string = { headerEnd, bytesStart: d.pos - bytes.byteLength, rightOrigin };
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
  return { start, end: d.pos, clock, length, string };
}

function readId(d: decoding.Decoder): { client: number; clock: number } {
  const client = decoding.readVarUint(d);
  return { client, clock: decoding.readVarUint(d) };
}

/** A varString is a varUint8Array of UTF-8: skipped without decoding it. */
function skipString(d: decoding.Decoder): void {
  decoding.readVarUint8Array(d);
}

/** The length in UTF-16 code units (Yjs's clock units for text) of UTF-8 `bytes`. */
function utf16Length(bytes: Uint8Array): number {
  if (isAscii(bytes)) return bytes.byteLength;
  let units = 0;
  for (let i = 0; i < bytes.byteLength; i++) {
    const b = bytes[i]!;
    // Every byte but a continuation byte starts a character; four-byte ones are two units.
    if ((b & 0xc0) !== 0x80) units += b >= 0xf0 ? 2 : 1;
  }
  return units;
}

/**
 * The sections in an order where each comes after every client it refers to (Kahn's
 * algorithm; clients not in the update are there already). Null when they refer to each
 * other in a cycle.
 */
function dependencyOrder(sections: Section[]): Section[] | null {
  const byClient = new Map(sections.map((s) => [s.client, s]));
  const waitingOn = new Map<Section, number>();
  const dependents = new Map<number, Section[]>();
  for (const s of sections) {
    let n = 0;
    for (const other of s.refers) {
      if (!byClient.has(other)) continue;
      n++;
      const list = dependents.get(other) ?? [];
      list.push(s);
      dependents.set(other, list);
    }
    waitingOn.set(s, n);
  }
  const ready = sections.filter((s) => waitingOn.get(s) === 0);
  const order: Section[] = [];
  while (ready.length > 0) {
    const s = ready.shift()!;
    order.push(s);
    for (const dependent of dependents.get(s.client) ?? []) {
      const left = waitingOn.get(dependent)! - 1;
      waitingOn.set(dependent, left);
      if (left === 0) ready.push(dependent);
    }
  }
  return order.length === sections.length ? order : null;
}

/** One client's run of consecutive structs in a piece: their bytes, copied or made. */
interface Run {
  client: number;
  clock: number;
  parts: Uint8Array[];
}

/** Collects structs into pieces of about `maxBytes` and writes each as an update. */
class PieceWriter {
  private readonly pieces: Uint8Array[] = [];
  private runs: Run[] = [];
  private bytes = 0;

  constructor(
    private readonly update: Uint8Array,
    private readonly maxBytes: number,
  ) {}

  add(client: number, clock: number, start: number, end: number): void {
    this.push(client, clock, this.update.subarray(start, end));
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
    if (this.bytes > 0 && this.bytes + struct.byteLength > this.maxBytes) this.flush(null);
    const last = this.runs[this.runs.length - 1];
    if (last && last.client === client) last.parts.push(struct);
    else this.runs.push({ client, clock, parts: [struct] });
    this.bytes += struct.byteLength;
  }

  private flush(deleteSet: Uint8Array | null): void {
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, this.runs.length);
    for (const run of this.runs) {
      encoding.writeVarUint(e, run.parts.length);
      encoding.writeVarUint(e, run.client);
      encoding.writeVarUint(e, run.clock);
      for (const p of run.parts) encoding.writeUint8Array(e, p);
    }
    if (deleteSet) encoding.writeUint8Array(e, deleteSet);
    else encoding.writeVarUint(e, 0);
    this.pieces.push(encoding.toUint8Array(e));
    this.runs = [];
    this.bytes = 0;
  }

  finish(deleteSet: Uint8Array): Uint8Array[] {
    this.flush(deleteSet);
    return this.pieces;
  }
}
