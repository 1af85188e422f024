/**
 * The workloads of the lock benchmark and their measurement. A pair is one acquire of a free
 * key followed, as soon as it resolved, by the release of that lease; its latency is from the
 * acquire call until the release resolved, on the bench's monotonic clock.
 *
 * - `one-key`: one loop, the same key every time.
 * - `keys`: one loop, round-robin over `keys` keys.
 * - `concurrent`: `concurrency` loops at once over the same `keys` keys; loop j owns the keys
 *   j, j + concurrency, ... (round-robin over them), so no two loops contend for a key and
 *   every acquire finds its key free: contention is not what is measured here.
 */
import { LatencySamples } from '../stats.js';
import { ownCpuMicros, sampleCpu, type CpuSample } from './cpu.js';
import type { MetricsSnapshot, RelayProcess } from './relay-process.js';
import type { LockSystem, SystemId } from './systems.js';

export const WORKLOADS = ['one-key', 'keys', 'concurrent'] as const;
export type WorkloadId = (typeof WORKLOADS)[number];

export interface WorkloadShape {
  keys: number;
  concurrency: number;
}

export function workloadLabel(w: WorkloadId, shape: WorkloadShape): string {
  switch (w) {
    case 'one-key':
      return '1 key, sequential';
    case 'keys':
      return `${shape.keys.toLocaleString('en-US')} keys, sequential`;
    case 'concurrent':
      return `${shape.keys.toLocaleString('en-US')} keys, ${shape.concurrency} concurrent loops`;
  }
}

/** Everything measured for one system on one workload, over all its rounds. */
export interface Measured {
  system: SystemId;
  workload: WorkloadId;
  pairs: number;
  /** Wall time of the measured rounds (sum), ms. */
  wallMs: number;
  pair: LatencySamples;
  acquire: LatencySamples;
  release: LatencySamples;
  /** Sums of the latencies, µs (for means). */
  pairSumUs: number;
  acquireSumUs: number;
  releaseSumUs: number;
  /** Pairs/s of each round. */
  roundThroughput: number[];
  /**
   * CPU time used during the measured rounds, µs: the bench process (clients), the relay, the
   * etcd members; everything outside this process tree (machine busy time minus the tree's);
   * and steal (the hypervisor gave a core of this VM to someone else).
   */
  cpu: { benchUs: number; relayUs: number; etcdUs: number; othersUs: number; stealUs: number };
  /** From the relay's own histogram (capsync systems only): time the relay took to answer, by op. */
  relaySide: { acquire: RelayOp; release: RelayOp; refusals: number } | null;
}

export function emptyMeasured(system: SystemId, workload: WorkloadId): Measured {
  return {
    system,
    workload,
    pairs: 0,
    wallMs: 0,
    pair: new LatencySamples(),
    acquire: new LatencySamples(),
    release: new LatencySamples(),
    pairSumUs: 0,
    acquireSumUs: 0,
    releaseSumUs: 0,
    roundThroughput: [],
    cpu: { benchUs: 0, relayUs: 0, etcdUs: 0, othersUs: 0, stealUs: 0 },
    relaySide: null,
  };
}

/** The relay's histogram of one op over the measured rounds (deltas). */
export interface RelayOp {
  sumS: number;
  count: number;
  /** Cumulative counts by upper bound (seconds). */
  buckets: Map<number, number>;
}

/** Upper bound (ms) of the histogram bucket that holds the p-th percentile; NaN without data. */
export function bucketPercentileMs(op: RelayOp, p: number): number {
  if (op.count === 0) return Number.NaN;
  const want = (p / 100) * op.count;
  for (const le of [...op.buckets.keys()].sort((a, b) => a - b)) if (op.buckets.get(le)! >= want) return le * 1000;
  return Number.NaN;
}

/** A system under test with its position in the key rotations (kept across rounds). */
export interface Driven {
  system: LockSystem;
  relay: RelayProcess | null;
  keysCursor: number;
  loopCursors: number[];
}

export function drive(system: LockSystem, relay: RelayProcess | null, shape: WorkloadShape): Driven {
  return { system, relay, keysCursor: 0, loopCursors: Array.from({ length: shape.concurrency }, () => 0) };
}

const ONE_KEY = 'bench-one';
const keyName = (i: number): string => `bench-k${String(i).padStart(4, '0')}`;

/** Runs `pairs` pairs of workload `w`; records them into `into` unless it is null (warm-up). */
export async function runPairs(
  d: Driven,
  w: WorkloadId,
  pairs: number,
  shape: WorkloadShape,
  into: Measured | null,
  etcdCpuMicros: () => number,
): Promise<void> {
  const record = (t0: number, t1: number, t2: number): void => {
    if (!into) return;
    const acquireUs = Math.round((t1 - t0) * 1000);
    const releaseUs = Math.round((t2 - t1) * 1000);
    into.acquire.add(acquireUs);
    into.release.add(releaseUs);
    into.pair.add(acquireUs + releaseUs);
    into.acquireSumUs += acquireUs;
    into.releaseSumUs += releaseUs;
    into.pairSumUs += acquireUs + releaseUs;
  };
  const onePair = async (key: string): Promise<void> => {
    const t0 = performance.now();
    let release;
    try {
      release = await d.system.acquire(key);
    } catch (err) {
      throw new Error(`${d.system.id}, ${w}: acquire("${key}") failed: ${describe(err)}`, { cause: err });
    }
    const t1 = performance.now();
    try {
      await release();
    } catch (err) {
      throw new Error(`${d.system.id}, ${w}: release of "${key}" failed: ${describe(err)}`, { cause: err });
    }
    record(t0, t1, performance.now());
  };

  const before = into ? await snapshot(d, etcdCpuMicros, 'before') : null;
  const started = performance.now();
  if (w === 'one-key') {
    for (let i = 0; i < pairs; i++) await onePair(ONE_KEY);
  } else if (w === 'keys') {
    for (let i = 0; i < pairs; i++) {
      await onePair(keyName(d.keysCursor));
      d.keysCursor = (d.keysCursor + 1) % shape.keys;
    }
  } else {
    let left = pairs;
    const loop = async (j: number): Promise<void> => {
      // Loop j owns the keys j, j + concurrency, ...: how many there are.
      const owned = Math.ceil((shape.keys - j) / shape.concurrency);
      while (left > 0) {
        left--;
        const n = d.loopCursors[j]!;
        d.loopCursors[j] = (n + 1) % owned;
        await onePair(keyName(j + n * shape.concurrency));
      }
    };
    await Promise.all(Array.from({ length: shape.concurrency }, (_, j) => loop(j)));
  }
  const wallMs = performance.now() - started;
  if (!into || !before) return;
  const after = await snapshot(d, etcdCpuMicros, 'after');
  into.pairs += pairs;
  into.wallMs += wallMs;
  into.roundThroughput.push((pairs * 1000) / wallMs);
  into.cpu.benchUs += after.benchUs - before.benchUs;
  into.cpu.relayUs += after.relayUs - before.relayUs;
  into.cpu.etcdUs += after.etcdUs - before.etcdUs;
  into.cpu.othersUs += Math.max(0, after.machine.machineBusyUs - before.machine.machineBusyUs - (after.machine.treeUs - before.machine.treeUs));
  into.cpu.stealUs += after.machine.stealUs - before.machine.stealUs;
  if (before.metrics && after.metrics) {
    const empty = () => ({ sumS: 0, count: 0, buckets: new Map<number, number>() });
    const r = (into.relaySide ??= { acquire: empty(), release: empty(), refusals: 0 });
    for (const name of ['acquire', 'release'] as const) {
      const a = after.metrics.opSeconds.get(name);
      const b = before.metrics.opSeconds.get(name);
      if (!a) continue;
      r[name].sumS += a.sum - (b?.sum ?? 0);
      r[name].count += a.count - (b?.count ?? 0);
      for (const [le, n] of a.buckets) r[name].buckets.set(le, (r[name].buckets.get(le) ?? 0) + n - (b?.buckets.get(le) ?? 0));
    }
    r.refusals += after.metrics.refusals - before.metrics.refusals;
  }
}

interface Snapshot {
  benchUs: number;
  relayUs: number;
  etcdUs: number;
  machine: CpuSample;
  metrics: MetricsSnapshot | null;
}

/** CPU times and relay metrics; the /metrics request is kept out of the measured interval (before: first; after: last). */
async function snapshot(d: Driven, etcdCpuMicros: () => number, at: 'before' | 'after'): Promise<Snapshot> {
  // Reading all of /proc takes a while too: it stays outside the interval as well.
  if (at === 'before') {
    const metrics = d.relay ? await d.relay.metrics() : null;
    const machine = sampleCpu();
    return { metrics, machine, benchUs: ownCpuMicros(), relayUs: d.system.relayCpuMicros(), etcdUs: etcdCpuMicros() };
  }
  const benchUs = ownCpuMicros();
  const relayUs = d.system.relayCpuMicros();
  const etcdUs = etcdCpuMicros();
  const machine = sampleCpu();
  return { benchUs, relayUs, etcdUs, machine, metrics: d.relay ? await d.relay.metrics() : null };
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return `${err.name}${typeof code === 'string' ? ` (${code})` : ''}: ${err.message}`;
}
