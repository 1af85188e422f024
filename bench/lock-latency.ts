/**
 * Lock benchmark: acquire + release latency (p50/p99/p99.9) and throughput of the capsync
 * lock service with the embedded backend and with the etcd backend (a relay started with
 * `--etcd`, on a real 3-member etcd cluster), against the etcd3 client doing the same etcd
 * round trips straight on that cluster; one key, 1,000 keys, and 16 concurrent loops. Prints
 * the results and, for a standard run, rewrites the lock-latency section of docs/benchmarks.md.
 *
 *   npm run bench:locks                 # the standard run
 *   npm run bench:locks -- --quick      # fewer pairs, for iteration
 *   npm run bench:locks -- --help
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { describeMachine } from './src/machine.js';
import { publishReport } from './src/results-doc.js';
import { describeSourceVersion } from './src/source-version.js';
import { CapsyncLocks } from './src/locks/capsync-locks.js';
import { waitForQuiet } from './src/locks/cpu.js';
import { findEtcd, startBenchEtcd, type BenchEtcd } from './src/locks/etcd-cluster.js';
import { probeFsync } from './src/locks/fsync-probe.js';
import { USAGE, parseOptions, type LockBenchOptions } from './src/locks/options.js';
import { RawEtcdLocks, etcd3Version, rawEtcdClient } from './src/locks/raw-etcd.js';
import { killAllRelays } from './src/locks/relay-process.js';
import { QUIET_CPU_PCT, QUIET_WAIT_MS, renderReport } from './src/locks/report.js';
import { ETCD_SYSTEMS, type SystemId } from './src/locks/systems.js';
import { drive, emptyMeasured, runPairs, workloadLabel, type Driven, type Measured, type WorkloadId } from './src/locks/workloads.js';
import { parseOrExplain } from './src/cli-args.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_FILE = path.join(REPO_DIR, 'docs/benchmarks.md');
const SECTION_ID = 'lock-latency';

async function main(): Promise<void> {
  const options = parseOrExplain(parseOptions, USAGE);
  if (!options) return;
  const o = options;
  const started = performance.now();
  const date = new Date();
  const notes: string[] = [];

  let systems = o.systems;
  const etcdPath = systems.some((s) => ETCD_SYSTEMS.includes(s)) ? findEtcd() : null;
  if (!etcdPath && systems.some((s) => ETCD_SYSTEMS.includes(s))) {
    const note = 'etcd not found (looked at ETCD_PATH, /usr/bin/etcd, /usr/local/bin/etcd): the etcd systems were skipped';
    log(note);
    notes.push(note);
    systems = systems.filter((s) => !ETCD_SYSTEMS.includes(s));
  }
  if (systems.length === 0) throw new Error('nothing to measure');

  const fsync = probeFsync();
  log(`4 KiB write + fdatasync in the temp directory: p50 ${fsync.p50Ms.toFixed(2)} ms, p99 ${fsync.p99Ms.toFixed(2)} ms`);
  const shape = { keys: o.keys, concurrency: o.concurrency };
  const measured = new Map<SystemId, Map<WorkloadId, Measured>>(
    systems.map((s) => [s, new Map(o.workloads.map((w) => [w, emptyMeasured(s, w)]))]),
  );
  const cleanups: Array<() => Promise<void>> = [];
  let etcd: BenchEtcd | null = null;
  const relayCommands: Partial<Record<SystemId, string>> = {};
  try {
    if (etcdPath) {
      log(`starting a 3-member etcd cluster (${etcdPath})`);
      etcd = await startBenchEtcd(etcdPath);
      cleanups.push(etcd.close);
      log(`etcd ${etcd.version} at ${etcd.endpoints.join(', ')}`);
    }
    const etcdCpu = (): number => (etcd ? etcd.cpuMicros() : Number.NaN);
    let raw: Etcd3 | null = null;
    const driven: Driven[] = [];
    for (const id of systems) {
      if (id === 'embedded' || id === 'etcd') {
        const sys = await CapsyncLocks.start(id, o.ttlMs, etcd?.endpoints, o.relayNodeArgs);
        cleanups.push(() => sys.close());
        relayCommands[id] = sys.relay.commandLine;
        driven.push(drive(sys, sys.relay, shape));
      } else {
        if (!raw) {
          const client = rawEtcdClient(etcd!.endpoints);
          raw = client;
          cleanups.push(async () => client.close());
        }
        driven.push(drive(new RawEtcdLocks(id, raw, o.ttlMs), null, shape));
      }
    }

    // Warm-up: every system, every workload (connections, JIT, the keys' first use).
    for (const d of driven) {
      const t0 = performance.now();
      for (const w of o.workloads) await runPairs(d, w, o.warmupPairs, shape, null, etcdCpu);
      log(`${d.system.id}: warmed up (${o.warmupPairs} pairs per workload, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }

    // Rounds: within a round, every system runs every workload in turn (the order rotates
    // from round to round), so a noisy stretch of the shared machine hits all of them.
    for (let r = 0; r < o.rounds; r++) {
      if (o.waitForQuiet) {
        const used = await waitForQuiet(QUIET_CPU_PCT, QUIET_WAIT_MS);
        if (used >= QUIET_CPU_PCT) log(`round ${r + 1}: other processes still use ${used.toFixed(0)} % of a core; measuring anyway`);
      }
      const pairs = Math.floor(o.pairs / o.rounds) + (r < o.pairs % o.rounds ? 1 : 0);
      const order = driven.map((_, i) => driven[(i + r) % driven.length]!);
      for (const w of o.workloads) {
        for (const d of order) {
          const m = measured.get(d.system.id)!.get(w)!;
          await runPairs(d, w, pairs, shape, m, etcdCpu);
          log(
            `round ${r + 1}/${o.rounds}  ${d.system.id.padEnd(17)} ${workloadLabel(w, shape).padEnd(32)}` +
              `  p50 ${m.pair.percentileMs(50).toFixed(2)} ms  p99 ${m.pair.percentileMs(99).toFixed(2)} ms` +
              `  ${m.roundThroughput.at(-1)!.toFixed(0)} pairs/s (so far ${m.pairs} pairs)`,
          );
        }
      }
    }
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => log(`cleanup failed: ${err instanceof Error ? err.message : String(err)}`));
    }
  }

  const report = renderReport({
    options: o,
    argv: process.argv.slice(2),
    systems,
    machine: describeMachine(),
    code: describeSourceVersion(REPO_DIR),
    date,
    runSeconds: (performance.now() - started) / 1000,
    etcdVersion: etcd?.version ?? null,
    etcd3Version: etcd3Version(),
    fsync,
    relayCommands,
    measured,
    notes,
  });
  publishReport(RESULTS_FILE, SECTION_ID, report, o.write);
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    // The exit hooks SIGKILL the relays and the etcd members.
    killAllRelays();
    process.exit(130);
  });
}

main().catch((err: unknown) => {
  killAllRelays();
  process.stderr.write(`lock-latency failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  if (err instanceof Error && err.cause instanceof Error && err.cause.stack) process.stderr.write(`caused by: ${err.cause.stack}\n`);
  process.exitCode = 1;
});
