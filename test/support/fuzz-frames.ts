import * as encoding from 'lib0/encoding';
import { Awareness, encodeAwarenessUpdate } from 'y-protocols/awareness';
import * as Y from 'yjs';
import { PROTOCOL_VERSION, decodeMessage, encodeMessage, type Message } from '@capsync/core';
import type { SeededRandom } from './seeded-random.js';

/**
 * Seeded generator of hostile WebSocket frames for the relay fuzz test. Everything it makes
 * follows from the SeededRandom it is given, so a seed replays the same frame sequence.
 *
 * Kinds (see `FrameKind`):
 * - random-bytes: uniformly random bytes of a random length (occasionally over the size limit)
 * - header-random: a real message header (sync step 1/2, update, awareness, auth, hello, ...)
 *   followed by random bytes, half of the time with a correct length prefix so the payload
 *   gets past framing and into the Yjs / awareness decoders
 * - mutated-frame: a real message with its frame bytes mutated (bit flips, truncation, ...)
 * - mutated-payload: a real message whose Yjs update, state vector or awareness update was
 *   mutated and then framed again correctly, to reach deep into the decoders
 * - valid: a real message unchanged (keeps the fuzz document growing with real structure)
 */
export type FrameKind = 'random-bytes' | 'header-random' | 'mutated-frame' | 'mutated-payload' | 'valid';

export interface FuzzFrame {
  kind: FrameKind;
  frame: Uint8Array;
}

export interface FrameFuzzerOptions {
  /** The relay's maxMessageBytes; a few random frames are made just over it. */
  maxMessageBytes: number;
}

const HEADERS: readonly (readonly number[])[] = [
  [0, 0], // sync step 1
  [0, 1], // sync step 2
  [0, 2], // sync update
  [1], // awareness
  [2, 0], // auth permission-denied
  [3], // query-awareness
  [100, 0], // capsync hello
  [100, 1], // capsync ack
  [100, 2], // capsync error
  [100, 11], // session-open (multiplexed sockets' control session)
  [100, 12], // session-opened
  [100, 13], // session-close
];

/** Bytes that often sit on decoder boundaries: varint continuation, sign bits, type tags. */
const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0x81, 0xff, 0x7e, 0x08, 0x77, 0x76];

export class FrameFuzzer {
  readonly corpus: Message[];

  constructor(
    private readonly rng: SeededRandom,
    private readonly options: FrameFuzzerOptions,
  ) {
    this.corpus = buildCorpus(rng);
  }

  next(): FuzzFrame {
    const r = this.rng.next();
    if (r < 0.2) return { kind: 'random-bytes', frame: this.rng.bytes(this.randomLength(true)) };
    if (r < 0.45) return { kind: 'header-random', frame: this.headerWithRandomPayload() };
    if (r < 0.65) return { kind: 'mutated-frame', frame: this.mutate(encodeMessage(this.rng.pick(this.corpus))) };
    if (r < 0.95) return { kind: 'mutated-payload', frame: this.mutatePayload(this.rng.pick(this.corpus)) };
    return { kind: 'valid', frame: encodeMessage(this.rng.pick(this.corpus)) };
  }

  /** Mostly short, sometimes a few KiB, rarely just over the relay's limit. */
  private randomLength(allowOversize: boolean): number {
    const r = this.rng.next();
    if (r < 0.5) return this.rng.int(0, 16);
    if (r < 0.85) return this.rng.int(0, 256);
    if (r < 0.98 || !allowOversize) return this.rng.int(0, 4096);
    return this.options.maxMessageBytes + this.rng.int(1, 4096);
  }

  private headerWithRandomPayload(): Uint8Array {
    const e = encoding.createEncoder();
    if (this.rng.next() < 0.1) encoding.writeVarUint(e, this.rng.int(0, 2 ** 31));
    else for (const b of this.rng.pick(HEADERS)) encoding.writeVarUint(e, b);
    const payload = this.rng.bytes(this.randomLength(false));
    if (this.rng.next() < 0.5) encoding.writeVarUint8Array(e, payload);
    else encoding.writeUint8Array(e, payload);
    return encoding.toUint8Array(e);
  }

  /** Mutates the payload inside a message and frames it again, so framing still checks out. */
  private mutatePayload(msg: Message): Uint8Array {
    switch (msg.type) {
      case 'sync-step-1':
        return encodeMessage({ ...msg, stateVector: this.mutate(msg.stateVector) });
      case 'sync-step-2':
      case 'update':
      case 'awareness':
        return encodeMessage({ ...msg, update: this.mutate(msg.update) });
      default:
        return this.mutate(encodeMessage(msg));
    }
  }

  /** Applies one to three random mutations. */
  mutate(input: Uint8Array): Uint8Array {
    let out: Uint8Array = Uint8Array.from(input);
    const n = this.rng.int(1, 3);
    for (let i = 0; i < n; i++) out = this.mutateOnce(out);
    return out;
  }

  private mutateOnce(b: Uint8Array): Uint8Array {
    const rng = this.rng;
    const pos = () => rng.int(0, Math.max(0, b.length - 1));
    switch (rng.int(0, 7)) {
      case 0: {
        // flip 1-4 bits
        if (b.length === 0) return b;
        const out = Uint8Array.from(b);
        for (let i = rng.int(1, 4); i > 0; i--) out[pos()]! ^= 1 << rng.int(0, 7);
        return out;
      }
      case 1: {
        // overwrite 1-4 bytes with boundary values
        if (b.length === 0) return b;
        const out = Uint8Array.from(b);
        for (let i = rng.int(1, 4); i > 0; i--) out[pos()] = rng.pick(INTERESTING_BYTES);
        return out;
      }
      case 2:
        // truncate
        return b.slice(0, rng.int(0, Math.max(0, b.length - 1)));
      case 3:
        // extend with random bytes
        return concat(b, rng.bytes(rng.int(1, 32)));
      case 4: {
        // insert random bytes in the middle
        const at = rng.int(0, b.length);
        return concat(b.subarray(0, at), rng.bytes(rng.int(1, 8)), b.subarray(at));
      }
      case 5: {
        // delete a range
        const at = pos();
        return concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.int(1, 8))));
      }
      case 6: {
        // duplicate a range elsewhere
        const from = pos();
        const chunk = b.slice(from, from + rng.int(1, 16));
        const at = rng.int(0, b.length);
        return concat(b.subarray(0, at), chunk, b.subarray(at));
      }
      default: {
        // splice in a huge varint (lengths, clocks, counts)
        const at = rng.int(0, b.length);
        const e = encoding.createEncoder();
        encoding.writeVarUint(e, rng.pick([2 ** 31, 2 ** 32 + 1, 2 ** 53 - 1, 0x7fffffff, 1_000_000]));
        return concat(b.subarray(0, at), encoding.toUint8Array(e), b.subarray(at));
      }
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Real messages from a few seeded documents edited at random: incremental updates, full
 * state (sync step 2), state vectors, a v2-encoded update (wrong format for this protocol),
 * awareness set and removal, hello and query-awareness, and the control messages of a multiplexed socket.
 */
function buildCorpus(rng: SeededRandom): Message[] {
  const corpus: Message[] = [
    { type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: ['ack', 'error'] },
    { type: 'query-awareness' },
    { type: 'ping', id: 1 },
    { type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) },
    { type: 'session-open', sid: 1, kind: 'doc', name: 'fuzz', subdoc: '', capabilities: ['writes:1'] },
    { type: 'session-opened', sid: 1, permission: 'write' },
    { type: 'session-close', sid: 1, code: 1000, reason: '' },
  ];
  for (let d = 0; d < 4; d++) {
    const doc = new Y.Doc({ gc: rng.next() < 0.5 });
    doc.clientID = rng.int(1, 2 ** 31);
    doc.on('update', (update: Uint8Array) => corpus.push({ type: 'update', update }));
    for (let i = 0; i < 30; i++) doc.transact(() => randomEdit(doc, rng));
    corpus.push(
      { type: 'sync-step-2', update: Y.encodeStateAsUpdate(doc) },
      { type: 'sync-step-1', stateVector: Y.encodeStateVector(doc) },
      { type: 'update', update: Y.encodeStateAsUpdateV2(doc) },
    );
    const aw = new Awareness(doc);
    aw.setLocalState({ user: { name: `fuzz-${d}`, color: '#' + rng.int(0, 0xffffff).toString(16) }, cursor: { index: rng.int(0, 100) } });
    corpus.push({ type: 'awareness', update: encodeAwarenessUpdate(aw, [doc.clientID]) });
    aw.setLocalState(null);
    corpus.push({ type: 'awareness', update: encodeAwarenessUpdate(aw, [doc.clientID]) });
    aw.destroy();
    doc.destroy();
  }
  // Round-trip check: every corpus message is valid input.
  for (const msg of corpus) decodeMessage(encodeMessage(msg));
  return corpus;
}

function randomString(rng: SeededRandom): string {
  const alphabet = ['a', 'b', 'z', ' ', 'é', '中', '😀', '\n', '"', '\\'];
  let s = '';
  for (let i = rng.int(1, 12); i > 0; i--) s += rng.pick(alphabet);
  return s;
}

function randomValue(rng: SeededRandom, depth = 0): unknown {
  switch (rng.int(0, depth > 1 ? 5 : 7)) {
    case 0:
      return rng.int(-1e6, 1e6);
    case 1:
      return rng.next() * 1e9;
    case 2:
      return randomString(rng);
    case 3:
      return rng.next() < 0.5;
    case 4:
      return null;
    case 5:
      return rng.bytes(rng.int(0, 16));
    case 6:
      return [randomValue(rng, depth + 1), randomValue(rng, depth + 1)];
    default:
      return { k: randomValue(rng, depth + 1), s: randomString(rng) };
  }
}

/** One random edit touching most Yjs content types (string, format, embed, any, binary, type, doc, deleted). */
function randomEdit(doc: Y.Doc, rng: SeededRandom): void {
  const text = doc.getText('t');
  const map = doc.getMap('m');
  const arr = doc.getArray('a');
  const xml = doc.getXmlFragment('x');
  switch (rng.int(0, 11)) {
    case 0:
    case 1:
      text.insert(rng.int(0, text.length), randomString(rng));
      break;
    case 2:
      if (text.length > 0) {
        const at = rng.int(0, text.length - 1);
        text.delete(at, rng.int(1, text.length - at));
      }
      break;
    case 3:
      if (text.length > 0) text.format(0, rng.int(1, text.length), { bold: rng.next() < 0.5 ? true : null });
      break;
    case 4:
      text.insertEmbed(rng.int(0, text.length), { image: randomString(rng) });
      break;
    case 5:
      map.set(randomString(rng), randomValue(rng));
      break;
    case 6: {
      const nested = rng.next() < 0.5 ? new Y.Map() : new Y.Array();
      map.set('nested-' + rng.int(0, 3), nested);
      if (nested instanceof Y.Map) nested.set('v', randomValue(rng));
      else nested.push([randomValue(rng)]);
      break;
    }
    case 7: {
      const key = Array.from(map.keys())[0];
      if (key !== undefined) map.delete(key);
      break;
    }
    case 8:
      arr.insert(rng.int(0, arr.length), [randomValue(rng), randomValue(rng)]);
      break;
    case 9:
      if (arr.length > 0) arr.delete(rng.int(0, arr.length - 1), 1);
      break;
    case 10: {
      const el = new Y.XmlElement('p');
      el.setAttribute('class', randomString(rng));
      el.insert(0, [new Y.XmlText(randomString(rng))]);
      xml.insert(rng.int(0, xml.length), [el]);
      break;
    }
    default:
      map.set('sub', new Y.Doc({ guid: `sub-${rng.int(0, 1e6)}` }));
      break;
  }
}
