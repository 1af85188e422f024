/**
 * Many documents over one socket (issue 12, part 2): one client opening N small documents
 * until all are synced — capsync multiplexed, capsync with a socket per document, and one
 * y-websocket provider per document against @y/websocket-server — in one run; and the delivery
 * latency of small edits while a large document's initial sync shares the client's socket.
 * Prints the results and, for a standard run, rewrites the mux section of docs/benchmarks.md.
 *
 *   npm run bench:mux                 # the standard run
 *   npm run bench:mux -- --quick      # fewer documents, a smaller large document
 *   npm run bench:mux -- --help
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOrExplain } from './src/cli-args.js';
import { othersPct, sampleCpu } from './src/locks/cpu.js';
import { describeMachine, waitForQuietMachine } from './src/machine.js';
import { publishReport } from './src/results-doc.js';
import { killAllServers, withServer } from './src/server-process.js';
import { describeSourceVersion } from './src/source-version.js';
import { measureHol, seedHol, type HolRun } from './src/mux/head-of-line.js';
import { docNames, measureOpen, seedCapsync, seedReference, type OpenRun } from './src/mux/open-many.js';
import { USAGE, parseOptions } from './src/mux/options.js';
import { renderReport } from './src/mux/report.js';
import { SYSTEMS } from './src/mux/systems.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_FILE = path.join(REPO_DIR, 'docs/benchmarks.md');
const SECTION_ID = 'mux';
const SMALL_DOCS = 4;
/** Before each measurement, wait (at most QUIET_WAIT_MS) until other processes use less than this share of one core. */
const QUIET_CPU_PCT = 20;
const QUIET_WAIT_MS = 5_000;

async function main(): Promise<void> {
  const o = parseOrExplain(parseOptions, USAGE);
  if (!o) return;
  const started = performance.now();
  const cpu0 = sampleCpu();
  const date = new Date();
  const opens: OpenRun[] = [];
  const hol: HolRun[] = [];
  log(`seed ${o.seed}`);

  // Both servers run through the whole open-N part, so every round measures the three clients
  // back to back (in an order that turns each round) and a busy stretch of the shared machine
  // hits all of them; the report takes the median round.
  await withServer('capsync-sqlite', [], (relay) =>
    withServer('reference', [], async (reference) => {
      const relayUrl = `ws://127.0.0.1:${relay.port}`;
      const referenceUrl = `ws://127.0.0.1:${reference.port}`;
      for (let round = 1; round <= o.rounds; round++) {
        for (const n of o.counts) {
          for (let i = 0; i < SYSTEMS.length; i++) {
            const system = SYSTEMS[(i + round - 1) % SYSTEMS.length]!;
            const names = docNames(system, n, round);
            const server = system === 'y-websocket' ? reference : relay;
            if (system === 'y-websocket') await seedReference(referenceUrl, names, o.seed, o.timeoutMs);
            else await seedCapsync(relayUrl, names, o.seed, o.timeoutMs);
            await waitForQuietMachine(QUIET_CPU_PCT, QUIET_WAIT_MS);
            const run = await measureOpen(system, round, server, names, o.seed, o.timeoutMs);
            opens.push(run);
            logOpen(run);
          }
        }
      }
    }),
  );

  await withServer('capsync-sqlite', [], async (relay) => {
    const url = `ws://127.0.0.1:${relay.port}`;
    // Twice, the order flipped, so neither mode always runs first (colder) or second.
    for (const [round, multiplex] of [[1, true], [1, false], [2, false], [2, true]] as const) {
      const tag = `${multiplex ? 'mux' : 'per-doc'}-${round}`;
      const big = `hol-${tag}-big`;
      const small = Array.from({ length: SMALL_DOCS }, (_, i) => `hol-${tag}-small-${i}`);
      const bigUpdateBytes = await seedHol(url, big, small, o.seed, o.bigBytes, o.timeoutMs);
      await waitForQuietMachine(QUIET_CPU_PCT, QUIET_WAIT_MS);
      const run = await measureHol(url, round, multiplex, big, small, bigUpdateBytes, o.probeEveryMs, o.timeoutMs);
      hol.push(run);
      log(
        `head of line, ${tag} (round ${round}): large document (${bigUpdateBytes} B) synced in ${run.bigSyncMs.toFixed(0)} ms; idle p99 ${run.idle.p99.toFixed(1)} ms;` +
          ` during: ${run.during.count} edits, p50 ${run.during.p50.toFixed(1)} ms, p99 ${run.during.p99.toFixed(1)} ms, max ${run.during.max.toFixed(1)} ms (p99 from due ${run.duringFromDue.p99.toFixed(1)} ms)`,
      );
    }
  });

  const runSeconds = (performance.now() - started) / 1000;
  const report = renderReport({
    options: o,
    opens,
    hol,
    bigBytes: o.bigBytes,
    machine: describeMachine(),
    code: describeSourceVersion(REPO_DIR),
    date,
    runSeconds,
    othersPct: othersPct(cpu0, sampleCpu(), runSeconds * 1000),
  });
  publishReport(RESULTS_FILE, SECTION_ID, report, o.write);
}

function logOpen(r: OpenRun): void {
  log(
    `round ${r.round}, open ${r.docs} documents, ${r.system}: all synced in ${r.ms.toFixed(0)} ms; sockets ${r.clientSockets} (relay ${r.relaySockets ?? '–'});` +
      ` client CPU ${r.clientCpuMs.toFixed(0)} ms, server CPU ${r.serverCpuMs.toFixed(0)} ms, server RSS ${r.serverKiBPerDoc.toFixed(1)} KiB/doc, heap+external ${r.serverHeapKiBPerDoc.toFixed(1)} KiB/doc`,
  );
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

main().then(
  // Clients may leave reconnect timers behind; every server has stopped, so the run is over.
  () => process.exit(),
  (err: unknown) => {
    killAllServers();
    process.stderr.write(`mux benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
