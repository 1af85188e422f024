import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { CloseCode, PROTOCOL_VERSION, closeCodeName, decodeMessage, encodeMessage, errorCodeFromReason } from '@capsync/core';
import { isClassifiedRefusal } from '../support/error-code.js';
import { FrameFuzzer, type FrameKind, type FuzzFrame } from '../support/fuzz-frames.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { SeededRandom, testSeed } from '../support/seeded-random.js';
import { waitForEvent } from '../support/wait.js';

/**
 * Seeded random-frames fuzz against one live relay (DESIGN.md "Failure and bad input").
 * FUZZ_FRAMES sets the number of frames (default 10,000); SEED replays a run's frame sequence.
 * The frames are the same for a seed; which of the parallel connections sends which frame,
 * and so the fuzz document's exact history, depends on timing.
 */

const FRAMES = Number(process.env['FUZZ_FRAMES'] ?? 10_000);
const PARALLEL = 6;
/** A connection that survives this many frames is closed by the fuzzer and replaced. */
const FRAMES_PER_CONNECTION = 32;
const MAX_MESSAGE_BYTES = 16 * 1024;
const SEEDED_DOC = 'seeded';
const FUZZ_DOC = 'fuzz';

/**
 * Sent after every fuzz frame: the relay's pong shows that the frame before it was handled. (Not
 * a hello: a connection says hello once, a second one closes it 4400.)
 */
const PROBE = encodeMessage({ type: 'ping', id: 0 });

interface Outcome {
  code: number;
  reason: string;
  /** The frame that was in flight when the relay closed (null: closed before any frame). */
  last: FuzzFrame | null;
}

/**
 * One fuzzing connection: sends a frame plus PROBE and waits until the relay answered the
 * probe or closed the connection. Checks that every frame the relay sends decodes.
 */
class FuzzSocket {
  private readonly events = new EventEmitter();
  private pongs = 0;
  private expectedPongs = 0;
  closed: { code: number; reason: string } | null = null;
  closedByUs = false;
  readonly undecodable: string[] = [];

  private constructor(private readonly ws: WebSocket) {
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer) => {
      try {
        if (decodeMessage(new Uint8Array(data)).type === 'pong') this.pongs++;
      } catch (err) {
        this.undecodable.push(`${(err as Error).message}: ${data.toString('hex').slice(0, 200)}`);
      }
      this.events.emit('change');
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.events.emit('change');
    });
    ws.on('error', () => {});
  }

  static async open(url: string): Promise<FuzzSocket> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return new FuzzSocket(ws);
  }

  /** Sends `frame`; resolves once the relay handled it (false) or closed the connection (true). */
  async exchange(frame: Uint8Array, what: () => string): Promise<boolean> {
    if (this.closed) return true;
    this.expectedPongs += 1 + (isPing(frame) ? 1 : 0);
    this.ws.send(frame);
    this.ws.send(PROBE);
    await waitForEvent(this.events, 'change', () => this.closed !== null || this.pongs >= this.expectedPongs, `relay to handle or refuse ${what()}`);
    return this.closed !== null;
  }

  async close(): Promise<void> {
    if (!this.closed) {
      this.closedByUs = true;
      this.ws.close(CloseCode.Normal);
    }
    await waitForEvent(this.events, 'change', () => this.closed !== null, 'fuzz connection to close');
  }
}

function isPing(frame: Uint8Array): boolean {
  try {
    return decodeMessage(frame).type === 'ping';
  } catch {
    return false;
  }
}

const hex = (b: Uint8Array, max = 160) => Buffer.from(b.subarray(0, max)).toString('hex') + (b.length > max ? `... (${b.length} bytes)` : '');

describe('relay under a seeded random-frames fuzz', () => {
  let relay: TestRelay;
  const logs: { level: number; msg: string; code?: string; err?: { message?: string } }[] = [];
  const clients: ProtocolClient[] = [];
  const connect = async (doc: string) => {
    const c = await ProtocolClient.synced(relay.docUrl(doc));
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    const logger = pino({ level: 'warn' }, { write: (line: string) => logs.push(JSON.parse(line) as (typeof logs)[number]) });
    relay = await startRelay({ maxMessageBytes: MAX_MESSAGE_BYTES, logger });
  });
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await relay?.dispose();
  });

  it(
    `stays up, closes bad connections with named codes and keeps other documents intact over ${FRAMES} frames`,
    async () => {
      const seed = testSeed('relay fuzz');
      const fuzzer = new FrameFuzzer(new SeededRandom(seed), { maxMessageBytes: MAX_MESSAGE_BYTES });

      // A pre-seeded document nobody fuzzes, and healthy clients connected before the fuzz.
      const seededBefore = await connect(SEEDED_DOC);
      await seededBefore.waitForAck(seededBefore.type('seeded content that must survive; '));
      const seededStored = (await relay.relay.store.load(SEEDED_DOC)).updates.map((u) => hex(u, Infinity));
      const fuzzBefore = await connect(FUZZ_DOC);

      const histogram = new Map<string, number>();
      const byKind = new Map<FrameKind, { sent: number; closed: number }>();
      const unexpected: Outcome[] = [];
      const undecodable: string[] = [];
      let sent = 0;
      let connections = 0;

      const count = (key: string) => histogram.set(key, (histogram.get(key) ?? 0) + 1);

      const worker = async () => {
        while (sent < FRAMES) {
          const socket = await FuzzSocket.open(relay.docUrl(FUZZ_DOC));
          connections++;
          let last: FuzzFrame | null = null;
          for (let i = 0; i < FRAMES_PER_CONNECTION && sent < FRAMES && !socket.closed; i++) {
            const current = fuzzer.next();
            last = current;
            sent++;
            const stats = byKind.get(current.kind) ?? { sent: 0, closed: 0 };
            byKind.set(current.kind, stats);
            stats.sent++;
            if (await socket.exchange(current.frame, () => `${current.kind} frame ${hex(current.frame)}`)) stats.closed++;
          }
          await socket.close();
          undecodable.push(...socket.undecodable);
          if (socket.closedByUs) {
            count('(closed by the fuzzer)');
            continue;
          }
          const { code, reason } = socket.closed!;
          count(`${code} ${closeCodeName(code)} ${errorCodeFromReason(reason) ?? `"${reason}"`}`);
          // Bad input must be classified: a named code, and a reason naming the error it is for.
          if (!isClassifiedRefusal(code, reason)) unexpected.push({ code, reason, last });
        }
      };

      const started = performance.now();
      await Promise.all(Array.from({ length: PARALLEL }, worker));
      const seconds = (performance.now() - started) / 1000;

      const report = [
        `[relay fuzz] seed=${seed}: ${sent} frames over ${connections} connections in ${seconds.toFixed(1)} s`,
        '  close codes:',
        ...Array.from(histogram.entries())
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `    ${String(n).padStart(6)}  ${k}`),
        '  frames (sent / led to a close):',
        ...Array.from(byKind.entries()).map(([k, s]) => `    ${k.padEnd(16)} ${String(s.sent).padStart(6)} / ${s.closed}`),
        `  relay warnings: ${logs.filter((l) => l.level === 40).length}, errors: ${logs.filter((l) => l.level >= 50).length}`,
      ];
      console.log(report.join('\n'));
      for (const u of unexpected.slice(0, 10)) {
        const after = u.last ? `after ${u.last.kind} frame ${hex(u.last.frame, Infinity)}` : 'before any frame';
        console.log(`[relay fuzz] unexpected close ${u.code} "${u.reason}" ${after}`);
      }

      expect(sent).toBe(FRAMES);
      expect(unexpected.map((u) => `${u.code} ${u.reason}`)).toEqual([]);
      expect(undecodable, 'frames the relay sent that do not decode').toEqual([]);
      expect(
        logs.filter((l) => l.level >= 50).map((l) => `${l.msg}: ${l.err?.message ?? l.code ?? ''}`),
        'relay error logs (unexpected errors, storage failures)',
      ).toEqual([]);

      // The relay is still up and serving.
      const health = await fetch(`${relay.httpUrl}/healthz`);
      expect(health.status).toBe(200);
      const ready = await fetch(`${relay.httpUrl}/readyz`);
      expect(ready.status).toBe(200);

      // The pre-seeded document is intact, in storage and as served to a newcomer.
      expect((await relay.relay.store.load(SEEDED_DOC)).updates.map((u) => hex(u, Infinity))).toEqual(seededStored);
      const seededAfter = await connect(SEEDED_DOC);
      expect(seededAfter.text).toBe('seeded content that must survive; ');

      // Clients connected before the fuzz are still connected, and sync with ones connected after.
      expect(seededBefore.closeInfo).toBeNull();
      expect(fuzzBefore.closeInfo).toBeNull();
      await seededBefore.waitForAck(seededBefore.type('edit after the fuzz'));
      await seededAfter.waitForText('seeded content that must survive; edit after the fuzz');

      const fuzzAfter = await connect(FUZZ_DOC);
      const marker = ` [edit after the fuzz ${seed}]`;
      await fuzzAfter.waitForAck(fuzzAfter.type(marker));
      await fuzzBefore.waitFor(() => fuzzBefore.text.includes(marker) || undefined, 'the after-fuzz edit at the before-fuzz client');
      // Whatever the fuzz got accepted into the fuzz document, both replicas hold the same state.
      const stateOf = (c: ProtocolClient) => Object.fromEntries(Y.decodeStateVector(Y.encodeStateVector(c.doc)));
      expect(stateOf(fuzzAfter), 'state vector of a client that joined after the fuzz vs one connected throughout').toEqual(stateOf(fuzzBefore));
      expect(fuzzAfter.text).toBe(fuzzBefore.text);
    },
    Math.max(60_000, FRAMES * 10),
  );
});
