/** Command-line options of `lock-latency.ts`. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SYSTEM_IDS, type SystemId } from './systems.js';
import { WORKLOADS, type WorkloadId } from './workloads.js';
import { list } from '../cli-args.js';

export interface LockBenchOptions {
  systems: SystemId[];
  workloads: WorkloadId[];
  /** Measured acquire+release pairs per system and workload (over all rounds). */
  pairs: number;
  /** Pairs per system and workload before measuring (the 1,000-key workload also touches every key once). */
  warmupPairs: number;
  /** The measured pairs are split into this many rounds; systems take turns within each round. */
  rounds: number;
  keys: number;
  concurrency: number;
  ttlMs: number;
  /** Wait (up to a few seconds) for other processes to calm down before every round. */
  waitForQuiet: boolean;
  /** Replace the section in docs/benchmarks.md. */
  write: boolean;
  /** True when the run is the standard one (`npm run bench:locks` without flags). */
  standard: boolean;
  quick: boolean;
  /** Extra Node arguments of the relay processes (`--profile` adds --cpu-prof). */
  relayNodeArgs: string[];
}

export const STANDARD = { pairs: 10_000, warmupPairs: 1_000, rounds: 5, keys: 1_000, concurrency: 16, ttlMs: 10_000 };
export const QUICK = { pairs: 1_000, warmupPairs: 200, rounds: 2 };

export const USAGE = `usage: npm run bench:locks [-- options]

  --quick              ${QUICK.pairs} pairs per system and workload in ${QUICK.rounds} rounds, ${QUICK.warmupPairs} warm-up pairs,
                       no waiting for a quiet machine; no docs update
  --pairs N            measured acquire+release pairs per system and workload (default ${STANDARD.pairs})
  --warmup N           warm-up pairs per system and workload (default ${STANDARD.warmupPairs})
  --rounds N           rounds the pairs are split into; systems take turns in each (default ${STANDARD.rounds})
  --keys N             keys of the many-keys workloads (default ${STANDARD.keys})
  --concurrency N      concurrent loops of the concurrent workload (default ${STANDARD.concurrency})
  --ttl-ms N           lease TTL asked for (default ${STANDARD.ttlMs})
  --systems a,b        subset of: ${SYSTEM_IDS.join(', ')}
  --workloads a,b      subset of: ${WORKLOADS.join(', ')}
  --profile DIR        run the relays with --cpu-prof, profiles written to DIR (one per relay process)
  --write / --no-write replace the lock-latency section in docs/benchmarks.md (default: only for a standard run)
`;

export function parseOptions(argv: string[]): LockBenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      pairs: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      keys: { type: 'string' },
      concurrency: { type: 'string' },
      'ttl-ms': { type: 'string' },
      systems: { type: 'string' },
      workloads: { type: 'string' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean' },
      profile: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const quick = values.quick ?? false;
  const tuned = ['pairs', 'warmup', 'rounds', 'keys', 'concurrency', 'ttl-ms', 'systems', 'workloads', 'profile'].some((k) => values[k as keyof typeof values] !== undefined);
  const standard = !quick && !tuned;
  const options: LockBenchOptions = {
    systems: values.systems ? list(values.systems).map(system) : [...SYSTEM_IDS],
    workloads: values.workloads ? list(values.workloads).map(workload) : [...WORKLOADS],
    pairs: values.pairs !== undefined ? positive('--pairs', values.pairs) : quick ? QUICK.pairs : STANDARD.pairs,
    warmupPairs: values.warmup !== undefined ? whole('--warmup', values.warmup) : quick ? QUICK.warmupPairs : STANDARD.warmupPairs,
    rounds: values.rounds !== undefined ? positive('--rounds', values.rounds) : quick ? QUICK.rounds : STANDARD.rounds,
    keys: values.keys !== undefined ? positive('--keys', values.keys) : STANDARD.keys,
    concurrency: values.concurrency !== undefined ? positive('--concurrency', values.concurrency) : STANDARD.concurrency,
    ttlMs: values['ttl-ms'] !== undefined ? positive('--ttl-ms', values['ttl-ms']) : STANDARD.ttlMs,
    waitForQuiet: !quick,
    write: values['no-write'] ? false : (values.write ?? standard),
    standard,
    quick,
    relayNodeArgs: values.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values.profile)}`] : [],
  };
  if (options.concurrency > options.keys) throw new RangeError('--concurrency must not exceed --keys (every loop has keys of its own)');
  if (options.rounds > options.pairs) throw new RangeError('--rounds must not exceed --pairs');
  // A lease that ran out before its release would leave its key taken (and fail the next acquire).
  if (options.ttlMs < 1_000) throw new RangeError('--ttl-ms must be at least 1000');
  return options;
}

function system(v: string): SystemId {
  if (!(SYSTEM_IDS as readonly string[]).includes(v)) throw new RangeError(`unknown system "${v}"; known: ${SYSTEM_IDS.join(', ')}`);
  return v as SystemId;
}

function workload(v: string): WorkloadId {
  if (!(WORKLOADS as readonly string[]).includes(v)) throw new RangeError(`unknown workload "${v}"; known: ${WORKLOADS.join(', ')}`);
  return v as WorkloadId;
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${flag} expects a positive whole number, got "${v}"`);
  return n;
}

function whole(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${flag} expects a whole number, got "${v}"`);
  return n;
}
