/**
 * Client benchmark: replays real editing traces (bench/src/client-trace/traces) through capsync
 * clients into an in-process relay and out to a second client — Node (memory and IndexedDB)
 * and headless Chromium (IndexedDB) — against plain Yjs doing the same edits. Measures client
 * overhead, time until durable and until the second client has the text, bytes on the wire,
 * stored size around compaction, cold open from IndexedDB, and the concurrent friendsforever
 * trace as two clients. Prints the results and, for a standard run, rewrites the
 * "Client: editing-trace replay" section of docs/benchmarks.md.
 *
 *   npm run bench:client                 # the standard run (several minutes)
 *   npm run bench:client -- --quick      # a prefix of the trace, one run each (well under a minute)
 *   npm run bench:client -- --help
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeMachine } from './src/machine.js';
import { publishReport } from './src/results-doc.js';
import { describeSourceVersion } from './src/source-version.js';
import { measure } from './src/client-trace/measure.js';
import { USAGE, parseOptions, type ClientTraceOptions } from './src/client-trace/options.js';
import { renderReport } from './src/client-trace/report.js';
import { parseOrExplain } from './src/cli-args.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_FILE = path.join(REPO_DIR, 'docs/benchmarks.md');
const SECTION_ID = 'client-trace';

async function main(): Promise<void> {
  const options = parseOrExplain(parseOptions, USAGE);
  if (!options) return;
  if (typeof (globalThis as { gc?: unknown }).gc !== 'function') log('note: run with --expose-gc (as `npm run bench:client` does) for a GC between measurements');
  const started = performance.now();
  const date = new Date();
  const results = await measure(options, log);
  const report = renderReport({
    options,
    machine: describeMachine(),
    code: describeSourceVersion(REPO_DIR),
    date,
    runSeconds: (performance.now() - started) / 1000,
    results,
  });
  publishReport(RESULTS_FILE, SECTION_ID, report, options.write);
  const failed = results.concurrent?.runs.some((run) => !run.converged);
  if (failed) {
    log('client-trace: the concurrent trace did not converge to endContent');
    process.exitCode = 1;
  }
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`client-trace failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
