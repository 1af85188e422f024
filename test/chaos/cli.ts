/**
 * `npm run chaos -- [options]` (from the repository root): chaos runs against three relay
 * processes (peered, or in cluster mode on one PostgreSQL database), six workload clients and
 * the friendsforever trace, every link through a fault proxy. See run.ts for what a run does and
 * checks, cluster.ts for the topologies.
 *
 *   --seed S          first seed (default: random, printed)
 *   --seeds N         number of seeds, S, S+1, ... (default 1)
 *   --duration MS     nemesis schedule length per seed (default 10000)
 *   --trace-txns N    replay only the first N trace transactions (default: all, checked
 *                     against endContent; 0: no trace)
 *   --bound MS        replicas must be equal this long after the heal (default 20000)
 *   --topology T      mesh (default: relays peered with each other) or postgres (relays in
 *                     cluster mode on one database of a throwaway PostgreSQL server, which
 *                     needs PostgreSQL's binaries: Debian's postgresql package or POSTGRES_BIN)
 *   --peer-mode M     on-demand (default) or replicate-all (mesh only)
 *   --failover        clients get every relay's URL, their own first
 *   --fail-fast       stop at the first failing seed
 *   --verbose         print every run's nemesis timeline
 *
 * Exit code 0 when every seed passed; 1 otherwise, after a report per failed seed naming it
 * and the command that reruns it.
 */
import { parseArgs } from 'node:util';
import { percentile } from './checker.js';
import { ChaosCluster, type PeerMode } from './cluster.js';
import { failureReport, runChaos, summarize, type RunResult } from './run.js';
import type { TopologyKind } from './schedule.js';

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\n(see the header of test/chaos/cli.ts for the options)\n`);
  process.exit(2);
}

function int(name: string, v: string | undefined, fallback: number, min = 0): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      seed: { type: 'string' },
      seeds: { type: 'string' },
      duration: { type: 'string' },
      'trace-txns': { type: 'string' },
      bound: { type: 'string' },
      'peer-mode': { type: 'string' },
      topology: { type: 'string' },
      failover: { type: 'boolean' },
      'fail-fast': { type: 'boolean' },
      verbose: { type: 'boolean' },
    },
    allowPositionals: false,
  });
  const first = int('seed', values.seed, Math.floor(Math.random() * 2 ** 31));
  const count = int('seeds', values.seeds, 1, 1);
  const durationMs = int('duration', values.duration, 10_000, 500);
  const traceTxns = values['trace-txns'] === undefined ? undefined : int('trace-txns', values['trace-txns'], 0);
  const boundMs = int('bound', values.bound, 20_000, 1);
  const peerMode = (values['peer-mode'] ?? 'on-demand') as PeerMode;
  if (peerMode !== 'on-demand' && peerMode !== 'replicate-all') usage(`--peer-mode must be on-demand or replicate-all`);
  const topology = (values.topology ?? 'mesh') as TopologyKind;
  if (topology !== 'mesh' && topology !== 'postgres') usage(`--topology must be mesh or postgres`);
  if (topology === 'postgres' && values['peer-mode']) usage(`--peer-mode applies to the mesh only (cluster-mode relays have no peers)`);
  const extra = [
    ...(traceTxns !== undefined ? ['--trace-txns', String(traceTxns)] : []),
    ...(values.bound ? ['--bound', String(boundMs)] : []),
    ...(peerMode !== 'on-demand' ? ['--peer-mode', peerMode] : []),
    ...(values.failover ? ['--failover'] : []),
  ];

  // (--topology postgres is added to rerun commands by run.ts.)
  const shown = [...(topology === 'postgres' ? ['--topology', 'postgres'] : []), ...extra];
  console.log(
    `chaos: seeds ${first}..${first + count - 1}, duration ${durationMs} ms, ${topology === 'postgres' ? 'cluster on PostgreSQL' : `mesh, peer mode ${peerMode}`}${values.failover ? ', failover' : ''}`,
  );
  const cluster = await ChaosCluster.start({ topology, peerMode, failover: values.failover ?? false });
  let interrupted = false;
  const stop = (signal: string) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.log(`chaos: ${signal}, stopping after the current seed (again to quit now)`);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  const results: RunResult[] = [];
  const failed: RunResult[] = [];
  try {
    for (let i = 0; i < count && !interrupted; i++) {
      const seed = first + i;
      console.log(`chaos: seed ${seed} (rerun: npm run chaos -- --seed ${seed} --duration ${durationMs}${shown.length ? ' ' + shown.join(' ') : ''})`);
      const r = await runChaos(cluster, { seed, durationMs, traceTxns, convergeBoundMs: boundMs, runId: `r${i}` });
      results.push(r);
      console.log(summarize(r));
      if (values.verbose) for (const e of r.events) console.log(`    ${e}`);
      if (!r.ok) {
        failed.push(r);
        console.log(failureReport(r, extra));
        if (values['fail-fast']) break;
      }
    }
  } finally {
    if (values.verbose) console.log(`chaos: connections accepted per proxy: ${JSON.stringify(cluster.connectionCounts())}`);
    await cluster.dispose();
  }

  const converge = results.flatMap((r) => (r.convergeMs === null ? [] : [r.convergeMs]));
  const catchUp = results.flatMap((r) => r.catchUpMs);
  const fmt = (v: number | null) => (v === null ? '—' : `${Math.round(v)} ms`);
  console.log(
    [
      `chaos: ${results.length} seed(s), ${failed.length} failed`,
      `convergence after the final heal p50=${fmt(percentile(converge, 50))} p99=${fmt(percentile(converge, 99))} max=${fmt(converge.length ? Math.max(...converge) : null)}`,
      `catch-up after round heals p50=${fmt(percentile(catchUp, 50))} p99=${fmt(percentile(catchUp, 99))} (${catchUp.length})`,
      `writes ${results.reduce((a, r) => a + r.writes.applied, 0)}/${results.reduce((a, r) => a + r.writes.attempted, 0)} accepted`,
      `lost=${results.reduce((a, r) => a + r.lost, 0)} divergent=${results.reduce((a, r) => a + r.divergent, 0)}`,
    ].join(', '),
  );
  if (failed.length > 0) {
    console.log(`chaos: FAILED seeds: ${failed.map((r) => r.seed).join(', ')}; rerun one with: npm run chaos -- --seed <seed> --duration ${durationMs}${shown.length ? ' ' + shown.join(' ') : ''}`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  console.error(`chaos: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
});
