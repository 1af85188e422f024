/**
 * Cluster benchmark (issue 13): capsync relays on one PostgreSQL (cluster mode) against
 * Hocuspocus 4 instances on one Redis (@hocuspocus/extension-redis) and a single capsync relay on
 * SQLite, in one run. Workload A: cross-instance delivery latency in one document of 50 clients
 * at offered loads; workload B: 1000 documents x 4 clients, sustained updates/s and PostgreSQL's
 * cost per update. Prints the results and, for a standard run, rewrites the "Cluster on
 * PostgreSQL" section of docs/benchmarks.md.
 *
 *   npm run bench:cluster                 # the standard run (2 runs, ~10 minutes)
 *   npm run bench:cluster -- --quick      # one short run, for iteration
 *   npm run bench:cluster -- --help
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOrExplain } from './src/cli-args.js';
import { describeMachine, waitForQuietMachine } from './src/machine.js';
import { publishReport } from './src/results-doc.js';
import { killAllServers } from './src/server-process.js';
import { describeSourceVersion } from './src/source-version.js';
import { probeFsync } from './src/locks/fsync-probe.js';
import type { LevelConfig, LevelResult } from './src/cluster/level.js';
import { USAGE, parseOptions, type ClusterOptions } from './src/cluster/options.js';
import { startPostgres } from './src/cluster/postgres.js';
import { startRedis } from './src/cluster/redis.js';
import { renderReport, type RunResult } from './src/cluster/report.js';
import { startSystem, type Stores, type SystemName } from './src/cluster/systems.js';
import { runWorkloadA, runWorkloadB } from './src/cluster/workloads.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_FILE = path.join(REPO_DIR, 'docs/benchmarks.md');
const SECTION_ID = 'cluster';
/** Before each level: wait up to this long for other processes to use under 20 % of a core. */
const QUIET_WAIT_MS = 3_000;

async function main(): Promise<void> {
  const options = parseOrExplain(parseOptions, USAGE);
  if (!options) return;
  const started = performance.now();
  const date = new Date();
  // The relays log warnings (storage errors, missed notes) to stdout/stderr during the run.
  process.env['BENCH_RELAY_LOG_LEVEL'] ??= 'warn';
  const fsync = probeFsync();
  log(`fsync probe: p50 ${fsync.p50Ms.toFixed(2)} ms, p99 ${fsync.p99Ms.toFixed(2)} ms`);
  const postgres = await startPostgres();
  const redis = await startRedis();
  log(`${postgres.version} on port ${postgres.port}; ${redis.version.split(' ').slice(0, 3).join(' ')} on port ${redis.port}`);
  const runs: RunResult[] = [];
  try {
    for (let run = 1; run <= options.runs; run++) runs.push(await runOnce(run, options, { postgres, redis }));
  } finally {
    await redis.close();
    await postgres.close();
  }
  const report = renderReport({
    options,
    machine: describeMachine(),
    code: describeSourceVersion(REPO_DIR),
    date,
    runSeconds: (performance.now() - started) / 1000,
    postgres: postgres.version,
    redis: redis.version,
    fsync,
    runs,
  });
  publishReport(RESULTS_FILE, SECTION_ID, report, options.write);
}

function levels(o: ClusterOptions, loads: number[]): LevelConfig[] {
  return loads.map((rate) => ({ rate, warmupMs: o.warmupMs, measureMs: o.measureMs, tailMs: o.tailMs, drainMs: o.drainMs, lateMs: o.lateMs }));
}

/** Extra Node flags for the servers, e.g. BENCH_SERVER_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' (profiles are written when they stop). */
const SERVER_NODE_ARGS = (process.env['BENCH_SERVER_NODE_ARGS'] ?? '').split(' ').filter(Boolean);

async function runOnce(run: number, o: ClusterOptions, stores: Stores): Promise<RunResult> {
  const result: RunResult = { run, a: new Map(), b: new Map() };
  const quiet = async (): Promise<void> => {
    await waitForQuietMachine(20, QUIET_WAIT_MS);
  };
  for (const name of o.systems) {
    log(`run ${run}, workload A (${o.clientsA} clients, one document): ${name}`);
    const system = await startSystem(name, stores, SERVER_NODE_ARGS);
    try {
      result.a.set(name, await runWorkloadA(system, { clients: o.clientsA, writers: o.writersA, levels: levels(o, o.loadsA), beforeLevel: quiet, onLevel: (l) => logLevel(name, l) }));
    } finally {
      await system.stop();
    }
  }
  for (const name of o.systems) {
    log(`run ${run}, workload B (${o.docsB} documents x 4 clients): ${name}`);
    const system = await startSystem(name, stores, SERVER_NODE_ARGS);
    try {
      result.b.set(name, await runWorkloadB(system, { docs: o.docsB, levels: levels(o, o.loadsB), beforeLevel: quiet, onLevel: (l) => logLevel(name, l), log }));
    } finally {
      await system.stop();
    }
  }
  return result;
}

function logLevel(name: SystemName, l: LevelResult): void {
  const f = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '-');
  log(
    `  ${name.padEnd(17)} ${String(l.offered).padStart(5)}/s sent ${l.sentPerSec.toFixed(0)}/s` +
      `  cross p50 ${f(l.cross.p50Ms)} p99 ${f(l.cross.p99Ms)} max ${f(l.cross.maxMs)} ms delivered ${l.cross.deliveredPct.toFixed(2)} %` +
      (l.local ? `  same p99 ${f(l.local.p99Ms)} ms` : '') +
      `  cpu servers ${l.serverCpuPct.toFixed(0)} % store ${l.storeCpuPct.toFixed(0)} % gen ${l.generatorCpuPct.toFixed(0)} % other ${l.otherCpuPct.toFixed(0)} %` +
      `  lag p99 ${l.generatorLagP99Ms.toFixed(1)} ms` +
      (l.missingAfterDrain ? `  MISSING ${l.missingAfterDrain} after drain, ${l.missingAtEnd} at end` : '') +
      (l.duplicates ? `  dup ${l.duplicates}` : '') +
      (l.stale ? `  stale ${l.stale}` : '') +
      (l.closedByServer ? `  CLOSED ${l.closeCodes.map(([code, n]) => `${n}x${code}`).join(' ')}` : '') +
      (l.stored ? `  state: ${l.stored.docs} docs, ${l.stored.sent} sent, missing somewhere ${l.stored.missingSomewhere} everywhere ${l.stored.missingEverywhere}, divergent ${l.stored.divergent}${l.stored.unreadable ? `, unreadable ${l.stored.unreadable}` : ''}` : '') +
      (l.db ? `  pg: ${l.db.statementsPerUpdate.toFixed(3)} stmt/upd, ${l.db.walBytesPerUpdate.toFixed(0)} WAL B/upd, ${l.db.xactPerUpdate.toFixed(3)} xact/upd (${l.db.byKind.map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')}; mean ms ${l.db.meanMsByKind.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')})` : '') +
      (l.relay ? `  relay: ${l.relay.catchUpReads} catch-ups, note lag ${l.relay.noteLagMeanMs.toFixed(2)} ms (${l.relay.notes}), persist ${l.relay.persistMeanMs.toFixed(2)} ms` : ''),
  );
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

main().catch((err: unknown) => {
  killAllServers();
  process.stderr.write(`cluster bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
