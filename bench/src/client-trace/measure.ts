/**
 * Runs every part of the client-trace benchmark in order and collects the results: the local
 * rounds (plain Yjs, an offline client, a connected client, all typing), then end to end
 * through the relay in Node (memory, IndexedDB), bursts, the concurrent trace, and Chromium.
 */
import { othersCpuMicros, sampleOthersCpu, waitForQuietMachine } from '../machine.js';
import { runChromium, type ChromiumOutcome } from './chromium.js';
import { runConcurrent, type ConcurrentRun } from './concurrent.js';
import { collectGarbage, nodeNextTask, runNodeBurst, runNodeClientOnly, runNodeSequential, type BurstRun, type SequentialRun } from './node-sequential.js';
import type { ClientTraceOptions } from './options.js';
import { plainBurst, runPlainYjs, type PlainYjsFinal, type PlainYjsRun } from './plain-yjs.js';
import { startRelay, type BenchRelay } from './relay.js';
import type { TypingTime } from './replay.js';
import { loadConcurrent, loadSequential, prefixOf } from './traces.js';

export const SEQUENTIAL_TRACE = 'automerge-paper';
export const CONCURRENT_TRACE = 'friendsforever';

/** Patches of the untimed warm-up round (JIT) before the first measurement. */
const WARM_UP_PATCHES = 20_000;
const TIMEOUT_MS = 15 * 60_000;
/** Before each run, wait (at most QUIET_WAIT_MS) until other processes use less than this share of one core. */
export const QUIET_CPU_PCT = 20;
export const QUIET_WAIT_MS = 10_000;

export interface BurstResult {
  patches: number;
  /** The same patches in one loop on a bare doc. */
  plainMs: number[];
  runs: BurstRun[];
}

export interface Results {
  trace: { name: string; patches: number; full: boolean; finalLength: number };
  plain: PlainYjsRun[];
  plainFinal: PlainYjsFinal;
  /** A client that never connects (memory storage), one per local round. */
  offline: TypingTime[];
  /** A connected client (memory storage; the relay is not waited for), one per local round. */
  connected: TypingTime[];
  nodeMemory: SequentialRun[];
  nodeIndexedDb: SequentialRun[];
  bursts: BurstResult[];
  concurrent: { trace: { name: string; txns: number; agents: number; finalLength: number }; runs: ConcurrentRun[] } | null;
  chromium: ChromiumOutcome | null;
  /** CPU other processes on the machine used during each measured run, percent of one core. */
  otherCpuPct: { part: string; pct: number }[];
}

export async function measure(o: ClientTraceOptions, log: (line: string) => void): Promise<Results> {
  const full = loadSequential(SEQUENTIAL_TRACE);
  const trace = o.patches === null ? full : prefixOf(full, o.patches);
  const docPrefix = `trace-${Date.now().toString(36)}`;
  log(`${trace.name}: ${trace.patches.length} of ${full.patches.length} patches`);

  // Warm-up (not measured): the JIT sees Yjs and the client's paths once.
  const warmPatches = trace.patches.slice(0, Math.min(WARM_UP_PATCHES, trace.patches.length));
  const warm = await runPlainYjs(warmPatches, nodeNextTask);
  await runNodeClientOnly(null, 'warm-up', warmPatches, warm.final.text);

  const otherCpuPct: Results['otherCpuPct'] = [];
  /** Runs `fn` on a machine as quiet as it gets within a few seconds, and records what others used meanwhile. */
  const quietly = async <T>(part: string, fn: () => Promise<T>): Promise<T> => {
    collectGarbage();
    if (!o.quick) await waitForQuietMachine(QUIET_CPU_PCT, QUIET_WAIT_MS);
    const s0 = sampleOthersCpu();
    const t0 = performance.now();
    const value = await fn();
    const pct = (100 * othersCpuMicros(s0, sampleOthersCpu())) / ((performance.now() - t0) * 1000);
    if (Number.isFinite(pct)) otherCpuPct.push({ part, pct });
    return value;
  };
  const withRelay = async <T>(fn: (relay: BenchRelay) => Promise<T>): Promise<T> => {
    // A fresh relay per run, so no run sees another's documents or backlog.
    const relay = await startRelay(o.relayStorage);
    try {
      return await fn(relay);
    } finally {
      await relay.close();
    }
  };
  const x = (v: number, base: number): string => `x${(v / base).toFixed(2)}`;

  // Local rounds: plain Yjs, a client that never connects, a connected client.
  const plain: PlainYjsRun[] = [];
  const offline: TypingTime[] = [];
  const connected: TypingTime[] = [];
  let plainFinal: PlainYjsFinal | null = null;
  for (let i = 0; i < o.overheadRuns; i++) {
    const p = await quietly('plain', () => runPlainYjs(trace.patches, nodeNextTask));
    plainFinal = p.final;
    if (trace.endContent !== null && p.final.text !== trace.endContent) throw new Error(`plain Yjs replay of ${trace.name} does not reach endContent`);
    plain.push(p);
    const off = await quietly('offline', () => runNodeClientOnly(null, `${docPrefix}-offline-${i}`, trace.patches, p.final.text));
    offline.push(off);
    const conn = await quietly('connected', () => withRelay((relay) => runNodeClientOnly(relay, `${docPrefix}-local-${i}`, trace.patches, p.final.text)));
    connected.push(conn);
    const base = p.edit.busyMs;
    log(
      `local      round ${i + 1}/${o.overheadRuns}, typing busy ms: plain Yjs ${base.toFixed(0)}, edit+ship ${p.ship.busyMs.toFixed(0)} (${x(p.ship.busyMs, base)}); ` +
        `capsync offline ${off.busyMs.toFixed(0)} (${x(off.busyMs, base)}), connected ${conn.busyMs.toFixed(0)} (${x(conn.busyMs, base)})`,
    );
  }
  const expected = plainFinal!.text;

  const sequential = (storage: 'memory' | 'indexeddb', i: number): Promise<SequentialRun> =>
    quietly(`node-${storage}`, () =>
      withRelay((relay) =>
        runNodeSequential({
          relay,
          storage,
          docName: `${docPrefix}-${storage}-${i}`,
          patches: trace.patches,
          expected,
          coldOpens: storage === 'indexeddb' ? o.coldOpens : 0,
          timeoutMs: TIMEOUT_MS,
        }),
      ),
    );
  const nodeMemory: SequentialRun[] = [];
  const nodeIndexedDb: SequentialRun[] = [];
  for (const storage of ['memory', 'indexeddb'] as const) {
    if (!o.parts.includes(`node-${storage}`)) continue;
    for (let i = 0; i < o.runs; i++) {
      const run = await sequential(storage, i);
      (storage === 'memory' ? nodeMemory : nodeIndexedDb).push(run);
      const l = run.local;
      log(
        `node ${storage === 'memory' ? 'mem' : 'idb'}   run ${i + 1}/${o.runs}: typing busy ${run.replay.busyMs.toFixed(0)} ms, wall ${run.replay.wallMs.toFixed(0)} ms, ` +
          `flush ${run.flushMs.toFixed(0)} ms, B synced ${run.bSyncedMs.toFixed(0)} ms, A sent ${run.wireA.sentFrames} frames, ` +
          `reconnects ${run.wireA.sockets}/${run.wireB.sockets}, longest silence ${run.wireA.longestSilenceMs.toFixed(0)}/${run.wireB.longestSilenceMs.toFixed(0)} ms` +
          (l
            ? `, saved locally ${l.localSavedMs.toFixed(0)} ms, stored ${l.before.updates} rows ${l.before.bytes} B -> ${l.after.bytes} B, ` +
              `cold open ${l.coldOpenMs.map((v) => v.toFixed(1)).join(', ')} ms`
            : ''),
      );
    }
  }

  const bursts: BurstResult[] = [];
  if (o.parts.includes('burst')) {
    for (const size of o.bursts) {
      const burst = prefixOf(full, size);
      const plainMs: number[] = [];
      const runs: BurstRun[] = [];
      for (let i = 0; i < o.runs; i++) {
        const { ms, text } = plainBurst(burst.patches);
        plainMs.push(ms);
        const run = await quietly('burst', () => withRelay((relay) => runNodeBurst(relay, `${docPrefix}-burst-${size}-${i}`, burst.patches, text, TIMEOUT_MS)));
        runs.push(run);
        log(
          `burst      ${size} patches, run ${i + 1}/${o.runs}: loop ${run.replayMs.toFixed(0)} ms (plain Yjs ${ms.toFixed(0)} ms), ` +
            `flush ${run.flushMs.toFixed(0)} ms, B synced ${run.bSyncedMs.toFixed(0)} ms, A sent ${run.wireA.sentFrames} frames ${run.wireA.sentBytes} B`,
        );
      }
      bursts.push({ patches: burst.patches.length, plainMs, runs });
    }
  }

  let concurrent: Results['concurrent'] = null;
  if (o.parts.includes('concurrent')) {
    const ff = loadConcurrent(CONCURRENT_TRACE);
    const runs: ConcurrentRun[] = [];
    for (let i = 0; i < o.runs; i++) {
      const run = await quietly('concurrent', () => withRelay((relay) => runConcurrent(relay, ff, `${docPrefix}-ff-${i}`, TIMEOUT_MS, nodeNextTask)));
      runs.push(run);
      log(
        `concurrent run ${i + 1}/${o.runs}: ${run.converged ? 'converged to endContent' : 'DID NOT converge to endContent'}, ` +
          `${run.totalMs.toFixed(0)} ms, ${run.waits} waits for the network (${run.waitMs.toFixed(0)} ms)`,
      );
    }
    concurrent = { trace: { name: ff.name, txns: ff.txns.length, agents: ff.numAgents, finalLength: ff.endContent.length }, runs };
  }

  let chromium: ChromiumOutcome | null = null;
  if (o.parts.includes('chromium')) {
    chromium = await runChromium({
      patches: trace.patches,
      expected,
      runs: o.runs,
      coldOpens: o.coldOpens,
      relayStorage: o.relayStorage,
      docPrefix,
      log,
      eachRun: (fn) => quietly('chromium', fn),
    });
    if (!chromium.ok) log(`chromium: skipped: ${chromium.skipped}`);
  }

  return {
    trace: { name: trace.name, patches: trace.patches.length, full: trace === full, finalLength: expected.length },
    plain,
    plainFinal: plainFinal!,
    offline,
    connected,
    nodeMemory,
    nodeIndexedDb,
    bursts,
    concurrent,
    chromium,
    otherCpuPct,
  };
}
