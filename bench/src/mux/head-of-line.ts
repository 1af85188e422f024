/**
 * Part 2 of the mux benchmark: head-of-line blocking. Client C has a few small documents open
 * and synced; client E (its own socket) edits them every few milliseconds, and the bench
 * records when each edit reaches C. Then C opens a large document (megabytes, already on the
 * relay): its initial sync goes to C over C's socket — the same one as the small documents
 * when C multiplexes. The delivery latencies of the edits made while the large document synced
 * show how long small documents wait behind it. Measured before (idle) and during.
 *
 * E runs in the bench process like C, so the client's own work on the large update (decoding,
 * applying) delays both; latencies are taken from the moment an edit was actually made, and
 * also from when it was due (which adds the time the process was too busy to make it).
 */
import { createClient, type DocHandle } from '@capsync/client';
import { WebSocket as NodeWebSocket } from 'ws';
import * as Y from 'yjs';
import { LatencySamples } from '../stats.js';
import { TEXT, fillLarge } from './content.js';
import { openCapsync } from './systems.js';

const PROBE_MAP = 'probe';
const IDLE_PROBES = 200;

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface HolRun {
  round: number;
  multiplex: boolean;
  /** Encoded size of the large document's state, bytes. */
  bigUpdateBytes: number;
  /** From C opening the large document until it was synced. */
  bigSyncMs: number;
  idle: LatencySummary;
  during: LatencySummary;
  /** During, counted from when each edit was due rather than made. */
  duringFromDue: LatencySummary;
  /** WebSockets C's client made, the large document's included. */
  clientSockets: number;
}

/** Writes the large document and the small ones onto the relay through one client; resolves with the large one's encoded size. */
export async function seedHol(url: string, big: string, small: string[], seed: number, bigBytes: number, timeoutMs: number): Promise<number> {
  const client = createClient({ url, storage: 'memory', WebSocket: NodeWebSocket as never, crossTab: false });
  try {
    const h = await client.open(big);
    await h.whenSynced({ timeoutMs });
    fillLarge(h.doc, seed, bigBytes);
    await h.flush({ durability: 'relay', timeoutMs });
    for (const name of small) {
      const s = await client.open(name);
      await s.whenSynced({ timeoutMs });
      s.doc.getText(TEXT).insert(0, name);
      await s.flush({ durability: 'relay', timeoutMs });
    }
    return Y.encodeStateAsUpdate(h.doc).byteLength;
  } finally {
    await client.close();
  }
}

export async function measureHol(
  url: string,
  round: number,
  multiplex: boolean,
  big: string,
  small: string[],
  bigUpdateBytes: number,
  everyMs: number,
  timeoutMs: number,
): Promise<HolRun> {
  const counter = { sockets: 0 };
  const c = await openCapsync(url, small, multiplex, counter, timeoutMs);
  try {
    const e = await openCapsync(url, small, true, { sockets: 0 }, timeoutMs);
    const prober = new Prober(e.handles, c.handles, everyMs);
    try {
      const idle = await prober.run(() => prober.sent >= IDLE_PROBES, timeoutMs);
      let bigSynced = false;
      let bigSyncMs = Number.NaN;
      const t0 = performance.now();
      const opened = c.client.open(big).then(async (h) => {
        await h.whenSynced({ timeoutMs });
        bigSyncMs = performance.now() - t0;
        bigSynced = true;
        return h;
      });
      opened.catch(() => undefined);
      const during = await prober.run(() => bigSynced, timeoutMs);
      // Checked once the edits made during the sync have arrived: encoding the large document
      // here blocks this process for tens of milliseconds, which they would otherwise count.
      const got = Y.encodeStateAsUpdate((await opened).doc).byteLength;
      if (got < bigUpdateBytes * 0.9) throw new Error(`the large document synced with ${got} of ${bigUpdateBytes} bytes`);
      return { round, multiplex, bigUpdateBytes, bigSyncMs, idle: idle.made, during: during.made, duringFromDue: during.due, clientSockets: counter.sockets };
    } finally {
      prober.stop();
      await e.close();
    }
  } finally {
    await c.close();
  }
}

/**
 * Edits the small documents through `editors` in turn, one every `everyMs` (catching up after
 * a stall, so every edit has a due time), and records when each reaches `receivers`.
 */
class Prober {
  private seq = 0;
  private readonly madeAt: number[] = [];
  private readonly dueAt: number[] = [];
  private readonly arrivedAt: number[] = [];
  private arrived = 0;
  private onArrival: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly unobserve: Array<() => void> = [];

  constructor(
    private readonly editors: DocHandle[],
    receivers: DocHandle[],
    private readonly everyMs: number,
  ) {
    for (const r of receivers) {
      const map = r.doc.getMap<number>(PROBE_MAP);
      const observer = (event: Y.YMapEvent<number>): void => {
        const now = performance.now();
        for (const key of event.keysChanged) {
          const n = Number(key);
          if (this.arrivedAt[n] === undefined) {
            this.arrivedAt[n] = now;
            this.arrived++;
          }
        }
        this.onArrival?.();
      };
      map.observe(observer);
      this.unobserve.push(() => map.unobserve(observer));
    }
  }

  get sent(): number {
    return this.seq;
  }

  /** Probes until `done()` holds (checked at every tick), then waits for every probe made meanwhile to arrive. */
  async run(done: () => boolean, timeoutMs: number): Promise<{ made: LatencySummary; due: LatencySummary }> {
    const first = this.seq;
    let nextDue = performance.now();
    await new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => {
        this.stop();
        reject(new Error(`probing did not finish within ${timeoutMs} ms (${this.arrived}/${this.seq} probes arrived)`));
      }, timeoutMs);
      const tick = (): void => {
        if (done()) {
          this.stopTimer();
          this.whenAllArrived(() => {
            clearTimeout(deadline);
            resolve();
          });
          return;
        }
        const now = performance.now();
        while (nextDue <= now) {
          const n = this.seq++;
          this.dueAt[n] = nextDue;
          this.madeAt[n] = performance.now();
          this.editors[n % this.editors.length]!.doc.getMap<number>(PROBE_MAP).set(String(n), n);
          nextDue += this.everyMs;
        }
      };
      this.timer = setInterval(tick, this.everyMs);
      tick();
    });
    const made = new LatencySamples();
    const due = new LatencySamples();
    for (let n = first; n < this.seq; n++) {
      made.add(Math.round((this.arrivedAt[n]! - this.madeAt[n]!) * 1000));
      due.add(Math.round((this.arrivedAt[n]! - this.dueAt[n]!) * 1000));
    }
    return { made: summarize(made), due: summarize(due) };
  }

  stop(): void {
    this.stopTimer();
    for (const u of this.unobserve.splice(0)) u();
    this.onArrival = null;
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private whenAllArrived(then: () => void): void {
    if (this.arrived >= this.seq) {
      then();
      return;
    }
    this.onArrival = () => {
      if (this.arrived < this.seq) return;
      this.onArrival = null;
      then();
    };
  }
}

function summarize(s: LatencySamples): LatencySummary {
  return { count: s.size, p50: s.percentileMs(50), p99: s.percentileMs(99), max: s.percentileMs(100) };
}
