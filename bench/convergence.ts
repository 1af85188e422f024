/**
 * Convergence benchmark: two relays (the real CLI, each its own process) form a mesh, relay B
 * peered to relay A through a partitionable, byte-counting TCP proxy (its own process). For
 * every point, a fresh document: the link is cut, each side's client makes N divergent
 * updates (1k, 10k, 100k; and 1k on top of a shared history of 100k), the link is healed,
 * and the bench measures how long until both relays hold identical state (from the heal, and
 * from the moment the document link was up again) and how many bytes crossed the proxy,
 * against the minimal diff between the two states. Prints the results and, for a standard
 * run, rewrites the convergence section of docs/benchmarks.md.
 *
 *   npm run bench:converge                 # the standard run
 *   npm run bench:converge -- --quick      # smaller sizes, fewer runs
 *   npm run bench:converge -- --help
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOrExplain } from './src/cli-args.js';
import { describeMachine, waitForQuietMachine } from './src/machine.js';
import { publishReport } from './src/results-doc.js';
import { describeSourceVersion } from './src/source-version.js';
import { CLIENT_A, CLIENT_B, HISTORY_CLIENT, generateEdits, type EditBatch } from './src/convergence/edits.js';
import { USAGE, parseOptions } from './src/convergence/options.js';
import { PartitionProxy, killAllProxies } from './src/convergence/proxy.js';
import { BenchRelay, freePort, killAllConvergenceRelays } from './src/convergence/relay.js';
import { renderReport } from './src/convergence/report.js';
import { runPoint, type Harness, type PointRun, type PointSpec, type Workload } from './src/convergence/run-point.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_FILE = path.join(REPO_DIR, 'docs/benchmarks.md');
const SECTION_ID = 'convergence';
/** Relay flags besides address, storage and peers: unload a finished point's document soon. */
const RELAY_EXTRA_ARGS = ['--idle-timeout-ms', '1000'];
const QUIET_CPU_PCT = 20;
const QUIET_WAIT_MS = 3_000;
const WARMUP: PointSpec = { id: 'warmup', diff: 1_000, history: 0 };

async function main(): Promise<void> {
  const o = parseOrExplain(parseOptions, USAGE);
  if (!o) return;
  const started = performance.now();
  const date = new Date();
  const runTag = date.getTime().toString(36);

  const points: PointSpec[] = o.sizes.map((n) => ({ id: `d${n}`, diff: n, history: 0 }));
  if (o.history > 0) points.push({ id: `h${o.history}-d${o.historyDiff}`, diff: o.historyDiff, history: o.history });

  // The edits, generated once: a size's edits are the first N of the largest size's.
  const maxDiff = Math.max(...o.sizes, WARMUP.diff);
  const gen = (what: string, f: () => EditBatch): EditBatch => {
    const batch = f();
    log(`generated ${what}: ${batch.updates.length} updates, ${batch.bytes} bytes, ${(batch.generateMs / 1000).toFixed(1)} s`);
    return batch;
  };
  const plainA = gen('the edits on A', () => generateEdits(CLIENT_A, maxDiff, null, 1));
  const plainB = gen('the edits on B', () => generateEdits(CLIENT_B, maxDiff, null, 2));
  const workloads = new Map<PointSpec, Workload>();
  const workloadOf = (p: PointSpec): Workload => {
    let w = workloads.get(p);
    if (!w) workloads.set(p, (w = { history: [], editsA: plainA.updates.slice(0, p.diff), editsB: plainB.updates.slice(0, p.diff) }));
    return w;
  };
  if (o.history > 0) {
    const history = gen('the shared history', () => generateEdits(HISTORY_CLIENT, o.history, null, 3));
    const a = gen('the edits on A on top of it', () => generateEdits(CLIENT_A, o.historyDiff, history.state, 4));
    const b = gen('the edits on B on top of it', () => generateEdits(CLIENT_B, o.historyDiff, history.state, 5));
    // The history reaches the relays as its final state, one message each: the document is the
    // same as after the updates one by one (same structs), without minutes of writing.
    workloads.set(points.at(-1)!, { history: [history.state], editsA: a.updates, editsB: b.updates });
  }

  const cleanups: Array<() => Promise<void>> = [];
  const runs: PointRun[] = [];
  let commands: { a: string; b: string } = { a: '', b: '' };
  try {
    const portA = await freePort();
    const portB = await freePort();
    const proxy = await PartitionProxy.start([{ name: 'to-a', targetPort: portA }]);
    cleanups.push(() => proxy.stop());
    const peerUrl = `ws://127.0.0.1:${proxy.ports['to-a']}`;
    const a = await BenchRelay.start({ relayId: 'relay-a', port: portA, peers: [], storage: o.storage, extraArgs: RELAY_EXTRA_ARGS });
    cleanups.push(() => a.stop());
    const b = await BenchRelay.start({ relayId: 'relay-b', port: portB, peers: [peerUrl], storage: o.storage, extraArgs: RELAY_EXTRA_ARGS });
    cleanups.push(() => b.stop());
    commands = { a: a.commandLine, b: b.commandLine };
    log(`relay A: ${a.commandLine} (pid ${a.pid})`);
    log(`relay B: ${b.commandLine} (pid ${b.pid}), its peer A through the proxy (pid ${proxy.pid})`);
    const h: Harness = { a, b, proxy, window: o.window, timeoutMs: o.timeoutMs, log };

    const warm = await runPoint(h, WARMUP, workloadOf(WARMUP), 0, runTag);
    log(`warm-up (${WARMUP.diff} updates per side): converged ${warm.healToConvergedMs.toFixed(0)} ms after the heal`);

    // Rounds: every point once per round, so a noisy stretch of the shared machine hits all of them.
    for (let r = 1; r <= o.repeats; r++) {
      for (const p of points) {
        if (o.waitForQuiet) await waitForQuietMachine(QUIET_CPU_PCT, QUIET_WAIT_MS);
        const run = await runPoint(h, p, workloadOf(p), r, runTag);
        runs.push(run);
        const payload = run.bytes.payloadToA + run.bytes.payloadToB;
        const minimal = run.minimal.aLacks + run.minimal.bLacks;
        log(
          `round ${r}/${o.repeats}  ${p.id.padEnd(16)} wrote the edits in ${(run.writeMs / 1000).toFixed(1)} s;` +
            ` heal → converged ${run.healToConvergedMs.toFixed(1)} ms (link up after ${run.healToLinkUpMs.toFixed(1)} ms,` +
            ` then ${run.linkUpToConvergedMs.toFixed(1)} ms; ${run.detectedBy});` +
            ` payload ${payload} B / minimal diff ${minimal} B = ${(payload / minimal).toFixed(3)}×` +
            `${run.bytesIdentical ? '' : '; encodings differ, content equal'}`,
        );
      }
    }
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => log(`cleanup failed: ${err instanceof Error ? err.message : String(err)}`));
    }
  }

  const report = renderReport({
    options: o,
    points,
    runs,
    commands,
    machine: describeMachine(),
    code: describeSourceVersion(REPO_DIR),
    date,
    runSeconds: (performance.now() - started) / 1000,
    window: o.window,
  });
  publishReport(RESULTS_FILE, SECTION_ID, report, o.write);
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

function killAll(): void {
  killAllConvergenceRelays();
  killAllProxies();
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

main().catch((err: unknown) => {
  killAll();
  process.stderr.write(`convergence failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
