import { describe, expect, it } from 'vitest';
import * as prng from 'lib0/prng';
import {
  CapsyncError,
  MAX_SID,
  MuxSessions,
  ProtocolError,
  SessionChannel,
  decodeMessage,
  decodeMuxFrame,
  encodeMessage,
  encodeMuxFrame,
  muxSessionsCapability,
  muxSessionsOf,
  type Message,
} from '../src/index.js';

function expectBadMessage(f: () => unknown): void {
  let caught: unknown;
  try {
    f();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  expect((caught as ProtocolError).code).toBe('bad-message');
}

describe('mux frames', () => {
  it.each([0, 1, 2, 127, 128, 16_383, 16_384, 2 ** 31, MAX_SID])('round-trips sid %i', (sid) => {
    const body = encodeMessage({ type: 'ping', id: 9 });
    const { sid: back, body: got } = decodeMuxFrame(encodeMuxFrame(sid, body));
    expect(back).toBe(sid);
    expect(got).toEqual(body);
  });

  it('writes the sid as a lib0 varUint, so any varint reader reads it', () => {
    expect([...encodeMuxFrame(300, new Uint8Array([7]))]).toEqual([0xac, 0x02, 7]);
    expect([...encodeMuxFrame(0, new Uint8Array(0))]).toEqual([0]);
  });

  it('gives the body as a view of the frame (no copy on the receive path)', () => {
    const frame = encodeMuxFrame(5, new Uint8Array([1, 2, 3]));
    const { body } = decodeMuxFrame(frame);
    expect(body.buffer).toBe(frame.buffer);
    expect(body.byteOffset).toBe(1);
  });

  it('refuses an empty frame, a truncated sid, an oversized varint and a sid over MAX_SID', () => {
    expectBadMessage(() => decodeMuxFrame(new Uint8Array(0)));
    expectBadMessage(() => decodeMuxFrame(new Uint8Array([0x80])));
    expectBadMessage(() => decodeMuxFrame(new Uint8Array(12).fill(0xff)));
    expectBadMessage(() => decodeMuxFrame(encodeMuxFrame(MAX_SID + 1, new Uint8Array(0))));
  });

  it('an empty body is a frame (the session refuses it, not the socket)', () => {
    expect(decodeMuxFrame(new Uint8Array([3]))).toEqual({ sid: 3, body: new Uint8Array(0) });
  });
});

/**
 * Hostile bytes into a multiplexed socket's receiving side: every frame either routes or throws a
 * CapsyncError (which closes the socket with a named code); never another error, never a crash.
 * Seeded: SEED replays a run.
 */
describe('mux frames: seeded fuzz', () => {
  const seed = Number(process.env['SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  const FRAMES = Number(process.env['FUZZ_FRAMES'] ?? 20_000);

  const valid: Message[] = [
    { type: 'hello', protocolVersion: 1, capabilities: ['ack', 'error'] },
    { type: 'ping', id: 3 },
    { type: 'session-open', sid: 1, kind: 'doc', name: 'a', subdoc: '', capabilities: ['writes:7'] },
    { type: 'session-open', sid: 3, kind: 'locks', name: '', subdoc: '', capabilities: [] },
    { type: 'session-opened', sid: 2, permission: 'write' },
    { type: 'session-close', sid: 1, code: 4403, reason: 'forbidden: no' },
    { type: 'update', update: new Uint8Array([0, 0]) },
  ];

  /** A frame: random bytes, a valid one, or a valid one mutated (flips, cuts, huge varints). */
  function frame(gen: prng.PRNG): Uint8Array {
    const r = gen.next();
    if (r < 0.2) return prng.uint8Array(gen, prng.int32(gen, 0, 24));
    const sid = prng.oneOf(gen, [0, 0, 0, 1, 2, 3, 5, 2 ** 32 - 1, 2 ** 40]);
    const good = encodeMuxFrame(Math.min(sid, MAX_SID), encodeMessage(prng.oneOf(gen, valid)));
    if (r < 0.4) return good;
    const out = Uint8Array.from(good);
    for (let i = prng.int32(gen, 1, 3); i > 0 && out.length > 0; i--) out[prng.int32(gen, 0, out.length - 1)] = prng.oneOf(gen, [0x00, 0x7f, 0x80, 0xff, 11, 12, 13, 100]);
    if (gen.next() < 0.3) return out.subarray(0, prng.int32(gen, 0, out.length));
    return out;
  }

  it(`decodes or refuses with a ProtocolError (seed ${seed}; replay with SEED=${seed})`, () => {
    console.log(`[mux fuzz] seed=${seed} (replay with SEED=${seed})`);
    const gen = prng.create(seed);
    let decoded = 0;
    for (let i = 0; i < FRAMES; i++) {
      const f = frame(gen);
      try {
        const { sid, body } = decodeMuxFrame(f);
        if (sid === 0) decodeMessage(body);
        decoded++;
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw new Error(`frame ${Buffer.from(f).toString('hex')} threw ${String(err)} (seed ${seed})`);
      }
    }
    expect(decoded).toBeGreaterThan(FRAMES / 10);
  });

  it(`routes or breaks the socket with a CapsyncError, never anything else (seed ${seed})`, () => {
    const gen = prng.create(seed + 1);
    /** The accepting side of a socket that accepts or refuses opens at random. */
    const socket = (): MuxSessions => {
      const sessions: MuxSessions = new MuxSessions({ send() {}, bufferedAmount: 0 }, false, {
        open: (msg) => (gen.next() < 0.5 ? sessions.accept(new SessionChannel(msg.sid, sessions)) : sessions.refuse(msg.sid, 4403, 'no')),
        control() {},
      });
      return sessions;
    };
    let sessions = socket();
    let broken = 0;
    for (let i = 0; i < FRAMES; i++) {
      const f = frame(gen);
      try {
        sessions.receive(f);
      } catch (err) {
        if (!(err instanceof CapsyncError)) throw new Error(`frame ${Buffer.from(f).toString('hex')} threw ${String(err)} (seed ${seed})`);
        broken++;
        // The owner closes the socket; the next frames go to a new one.
        sessions.socketClosed(4400, 'bad-message');
        sessions = socket();
      }
    }
    expect(broken).toBeGreaterThan(0);
    expect(broken).toBeLessThan(FRAMES);
  });
});

describe('mux-sessions: capability (the relay’s session cap in its hello)', () => {
  it('round-trips a cap; none, malformed or non-positive is no cap', () => {
    expect(muxSessionsOf(['mux', muxSessionsCapability(2000)])).toBe(2000);
    expect(muxSessionsOf(['mux'])).toBe(Infinity);
    for (const bad of ['mux-sessions:', 'mux-sessions:x', 'mux-sessions:0', 'mux-sessions:-3', 'mux-sessions:1.5', 'mux-sessions:1e400']) {
      expect(muxSessionsOf([bad]), bad).toBe(Infinity);
    }
  });
});
