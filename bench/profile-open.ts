/**
 * Profiling aid for the open-N part of bench:mux (not a benchmark: no reference, no report).
 * A relay (its own process, --cpu-prof) and a multiplexed client in this process; each round
 * seeds N documents, then opens them all in a fresh client and waits until every one is synced.
 * Writes the client's profile of each open (`client-<round>.cpuprofile`, or `.heapprofile`),
 * the relay's whole-run profiles (`relay/`) and, per round, the relay's monotonic-clock window
 * of the open (`relay-windows.json`: both processes' profiles share that clock, so the relay's
 * can be cut to the window). Prints wall time and both sides' CPU per round.
 *
 *   BENCH_DIST=1 node --expose-gc --import tsx profile-open.ts [N=1000] [outDir] [rounds=3]
 *   NOPROF=1 ...   no profiler, CPU and wall time only
 *   HEAP=1 ...     a sampling heap profile of the client instead (live objects; ALL=1: all allocations)
 */
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
import { withServer } from './src/server-process.js';
import { docNames, seedCapsync } from './src/mux/open-many.js';
import { openCapsync } from './src/mux/systems.js';

const n = Number(process.argv[2] ?? 1000);
const out = process.argv[3] ?? '/tmp/perf1000/out';
const rounds = Number(process.argv[4] ?? 3);
fs.mkdirSync(out, { recursive: true });
await withServer('capsync-sqlite', process.env.NOPROF ? [] : [`--cpu-prof`, `--cpu-prof-dir=${out}/relay`, '--cpu-prof-interval=200'], async (relay) => {
  const url = `ws://127.0.0.1:${relay.port}`;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  const windows: [number, number][] = [];
  for (let r = 1; r <= rounds; r++) {
    const names = docNames('capsync-mux', n, r);
    await seedCapsync(url, names, 12, 60_000);
    await new Promise((res) => setTimeout(res, 500));
    const c0 = await relay.cpu();
    (globalThis as { gc?: () => void }).gc?.();
    if (process.env.HEAP) await session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: !!process.env.ALL, includeObjectsCollectedByMinorGC: !!process.env.ALL });
    else if (!process.env.NOPROF) await session.post('Profiler.start');
    const own0 = process.cpuUsage();
    const t0 = performance.now();
    const open = await openCapsync(url, names, true, { sockets: 0 }, 60_000);
    const ms = performance.now() - t0;
    const own = process.cpuUsage(own0);
    const { profile } = process.env.HEAP ? await session.post('HeapProfiler.stopSampling') : process.env.NOPROF ? { profile: {} } : await session.post('Profiler.stop');
    const c1 = await relay.cpu();
    fs.writeFileSync(`${out}/client-${r}.${process.env.HEAP ? 'heapprofile' : 'cpuprofile'}`, JSON.stringify(profile));
    windows.push([c0.atMicros, c1.atMicros]);
    console.log(`round ${r}: ${n} docs in ${ms.toFixed(0)} ms; client cpu ${((own.user + own.system) / 1000).toFixed(0)} ms, relay cpu ${((c1.cpuMicros - c0.cpuMicros) / 1000).toFixed(0)} ms`);
    await open.close();
  }
  fs.writeFileSync(`${out}/relay-windows.json`, JSON.stringify(windows));
});
process.exit(0);
