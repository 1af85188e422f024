/**
 * Relay load benchmark: fan-out latency/throughput and memory per idle connection of the
 * capsync relay (SQLite and memory storage) against the reference y-websocket server and a
 * raw `ws` broadcast server. Prints the results and, for a standard run, rewrites the
 * "Relay fan-out and idle memory" section of docs/benchmarks.md.
 *
 *   npm run bench                      # the standard run (a few minutes)
 *   npm run bench -- --quick           # smaller and shorter, for iteration
 *   npm run bench -- --help
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { measureIdleMemory, type IdleMemoryResult } from './src/idle-memory.js';
import { describeMachine } from './src/machine.js';
import { describeSourceVersion } from './src/source-version.js';
import { USAGE, parseOptions, type BenchOptions } from './src/options.js';
import { renderReport } from './src/report.js';
import { publishReport } from './src/results-doc.js';
import { runFanOut, type MeasuredLevel } from './src/run-levels.js';
import { checkoutBaseline } from './src/baseline-checkout.js';
import { killAllServers, useBaseline, useCandidate, withServer } from './src/server-process.js';
import { SUSTAINED_DELIVERED_PCT, SUSTAINED_P99_MS } from './src/targets.js';
import { parseOrExplain } from './src/cli-args.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_FILE = path.join(REPO_DIR, 'docs/benchmarks.md');
const SECTION_ID = 'relay-load';

async function main(): Promise<void> {
  const options = parseOrExplain(parseOptions, USAGE);
  if (!options) return;
  const started = performance.now();
  const date = new Date();
  if (options.baseline) {
    const baseline = checkoutBaseline(REPO_DIR, options.baseline);
    useBaseline(baseline.root, `capsync at ${baseline.ref} = ${baseline.commit} (sqlite, fsync per commit)`);
    log(`baseline: ${baseline.ref} (${baseline.commit}) checked out in ${baseline.root}`);
    // The relay measured against it runs from a checkout too (HEAD unless --candidate): same
    // setup, only the commit differs (uncommitted changes are not measured: commit them first).
    const candidate = checkoutBaseline(REPO_DIR, options.candidate);
    useCandidate(candidate.root, `capsync at ${options.candidate} = ${candidate.commit} (sqlite, fsync per commit)`);
    log(`candidate: ${options.candidate} (${candidate.commit}) checked out in ${candidate.root}`);
  }
  const levels = options.fanOut ? await runFanOut(options, logLevel) : [];
  const memory = options.idleConnections > 0 ? await runIdleMemory(options) : [];

  const report = renderReport({
    options,
    machine: describeMachine(),
    code: describeSourceVersion(REPO_DIR),
    date,
    runSeconds: (performance.now() - started) / 1000,
    levels,
    memory,
  });
  publishReport(RESULTS_FILE, SECTION_ID, report, options.write);
}

function logLevel(l: MeasuredLevel): void {
  const ok = l.p99Ms <= SUSTAINED_P99_MS && l.deliveredPct >= SUSTAINED_DELIVERED_PCT;
  log(
    `${l.server.padEnd(14)} ${String(l.offered).padStart(5)}/s  sent ${l.sentPerSec.toFixed(0).padStart(5)}/s` +
      `  delivered ${l.deliveredPerSec.toFixed(0).padStart(5)}/s (${l.deliveredPct.toFixed(2)} %)` +
      `  p50 ${l.p50Ms.toFixed(2)} ms  p99 ${l.p99Ms.toFixed(2)} ms` +
      (l.p99Runs.length > 1 ? ` (median of ${l.p99Runs.map((v) => v.toFixed(2)).join(', ')})` : '') +
      `  upd/msg ${l.updatesPerFrame.toFixed(1)}  cpu server ${l.serverCpuPct.toFixed(0)} % gen ${l.clientCpuPct.toFixed(0)} %` +
      ` other ${l.otherCpuPct.toFixed(0)} %  gen lag p99 ${l.generatorLagP99Ms.toFixed(1)} ms` +
      (l.closedByServer > 0 ? `  closed ${l.closedByServer}` : '') +
      (ok ? '' : '  (not sustained)'),
  );
}

async function runIdleMemory(o: BenchOptions): Promise<IdleMemoryResult[]> {
  const results: IdleMemoryResult[] = [];
  for (const kind of o.servers) {
    const result = await withServer(kind, o.serverNodeArgs, (server) => measureIdleMemory(server, 'idle', o.idleConnections));
    results.push(result);
    log(
      `${kind.padEnd(14)} ${o.idleConnections} idle connections: ` +
        `${(result.rssPerConnection / 1024).toFixed(1)} KB RSS, ${(result.heapPerConnection / 1024).toFixed(1)} KB heap per connection`,
    );
  }
  return results;
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

main().catch((err: unknown) => {
  killAllServers();
  process.stderr.write(`relay-load failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
