import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeCodeName, errorCodeFromReason } from '@capsync/core';
import { isClassifiedRefusal } from '../support/error-code.js';
import { FrameFuzzer } from '../support/fuzz-frames.js';
import { MuxClient, type MuxDocSession } from '../support/mux-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { SeededRandom, testSeed } from '../support/seeded-random.js';

/**
 * Seeded hostile frames into the multiplexed endpoint: into the control session, into live
 * sessions, for sids never opened, and raw bytes. Every close (of a session or of the socket) must
 * be a named refusal, the relay logs no error, and a bystander socket keeps syncing. MUX_FUZZ_FRAMES
 * sets the number of frames; SEED replays a run's frame sequence.
 */

const FRAMES = Number(process.env['MUX_FUZZ_FRAMES'] ?? 1_500);
const MAX_MESSAGE_BYTES = 16 * 1024;
const SESSIONS = 3;

describe('multiplexed endpoint under a seeded random-frames fuzz', () => {
  let relay: TestRelay;
  const logs: { level: number; msg: string; code?: string; err?: { message?: string } }[] = [];

  beforeAll(async () => {
    const logger = pino({ level: 'warn' }, { write: (line: string) => logs.push(JSON.parse(line) as (typeof logs)[number]) });
    relay = await startRelay({ maxMessageBytes: MAX_MESSAGE_BYTES, logger });
  });
  afterAll(async () => {
    await relay?.dispose();
  });

  it(`closes what is bad with named codes, session by session or the socket, over ${FRAMES} frames`, async () => {
    const seed = testSeed('mux fuzz');
    const rng = new SeededRandom(seed);
    const fuzzer = new FrameFuzzer(rng, { maxMessageBytes: MAX_MESSAGE_BYTES });
    const bystander = await MuxClient.connect(relay.url);
    const watched = await bystander.synced('fuzz-0');

    const histogram = new Map<string, number>();
    const unexpected: string[] = [];
    const seen = (scope: string, code: number, reason: string): void => {
      const key = `${scope} ${code} ${closeCodeName(code)} ${errorCodeFromReason(reason) ?? `"${reason}"`}`;
      histogram.set(key, (histogram.get(key) ?? 0) + 1);
      if (!isClassifiedRefusal(code, reason)) unexpected.push(`${key}: ${reason}`);
    };

    let mux: MuxClient | null = null;
    let sessions: MuxDocSession[] = [];
    let pingId = 0;
    let sockets = 0;
    for (let sent = 0; sent < FRAMES; sent++) {
      if (!mux || mux.closeInfo) {
        mux = await MuxClient.connect(relay.url);
        sockets++;
        sessions = [];
      }
      // Sessions the relay closed alone (a closed socket's were replaced above, uncounted).
      for (const s of sessions) if (s.closeInfo) seen('session', s.closeInfo.code, s.closeInfo.reason);
      sessions = sessions.filter((s) => !s.closeInfo);
      while (sessions.length < SESSIONS) sessions.push(mux.open(`fuzz-${rng.int(0, 5)}`));

      const frame = fuzzer.next().frame;
      const r = rng.next();
      if (r < 0.15) mux.sendFrame(0, frame);
      else if (r < 0.22) mux.sendFrame(rng.pick([2, 4, 97, 2 ** 32 - 1, sessions[0]!.sid + 2]), frame);
      else if (r < 0.27) mux.sendRaw(rng.bytes(rng.int(0, 8)));
      else rng.pick(sessions).sendRaw(frame);

      // The relay handles a socket's frames in order: its pong shows this frame was handled.
      const id = ++pingId;
      const socket = mux;
      socket.sendControl({ type: 'ping', id });
      await socket.waitFor(() => socket.closeInfo !== null || socket.control.some((m) => m.type === 'pong' && m.id === id), `pong ${id} or a close`);
      if (socket.closeInfo) seen('socket', socket.closeInfo.code, socket.closeInfo.reason);
    }
    await mux?.close();

    console.log(
      [
        `[mux fuzz] seed=${seed}: ${FRAMES} frames over ${sockets} sockets`,
        ...Array.from(histogram.entries())
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `    ${String(n).padStart(6)}  ${k}`),
      ].join('\n'),
    );
    expect(unexpected).toEqual([]);
    expect(
      logs.filter((l) => l.level >= 50).map((l) => `${l.msg}: ${l.err?.message ?? l.code ?? ''}`),
      'relay error logs (unexpected errors, storage failures)',
    ).toEqual([]);
    // The bystander's socket was never touched, and it still syncs.
    expect(bystander.closeInfo).toBeNull();
    expect(watched.closeInfo).toBeNull();
    await watched.waitForAck(watched.type(`after the fuzz ${seed}`));
    expect(bystander.closeInfo).toBeNull();
    await bystander.close();
  }, Math.max(60_000, FRAMES * 20));
});
