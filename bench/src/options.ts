/** Command-line options of `relay-load.ts`. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SERVER_KINDS, type ServerKind } from './server-process.js';
import { TARGETS } from './targets.js';
import { list } from './cli-args.js';

export interface BenchOptions {
  servers: ServerKind[];
  /** Offered loads in updates/s over all clients. */
  levels: number[];
  clients: number;
  warmupMs: number;
  measureMs: number;
  tailMs: number;
  drainMs: number;
  /** Runs at the level where the p99 target is compared (the median is reported). */
  repeats: number;
  /** Idle connections for the memory measurement; 0 skips it. */
  idleConnections: number;
  fanOut: boolean;
  /** Replace the section in docs/benchmarks.md. */
  write: boolean;
  /** True when the run is the standard one (`npm run bench` without flags). */
  standard: boolean;
  /** Git ref whose relay runs as `capsync-baseline` in the same run. */
  baseline?: string;
  /** Git ref whose relay runs as `capsync-sqlite` when compared with a baseline (default HEAD). */
  candidate: string;
  /** Extra Node arguments of the server processes (`--profile` adds --cpu-prof). */
  serverNodeArgs: string[];
}

export const USAGE = `usage: npm run bench [-- options]

  --quick              levels 500,1500,3000, 2 s windows, 500 idle connections; no docs update
  --levels 500,1500    offered loads (updates/s over all clients)
  --duration 5         measurement window per level, seconds
  --warmup 1.5         warm-up per level, seconds
  --clients 50         clients in the fan-out document
  --repeats 3          runs at ${TARGETS.p99CompareAt}/s, where the p99 target is compared (median reported)
  --connections 2000   idle connections for the memory measurement (0 skips it)
  --servers a,b        subset of: ${SERVER_KINDS.join(', ')}
  --no-fanout          memory measurement only
  --baseline REF       also run capsync-baseline: the relay at git REF (e.g. HEAD~3), same run, for a ratio;
                       capsync-sqlite then runs from a checkout of HEAD (commit what you measure)
  --candidate REF      with --baseline: run capsync-sqlite from a checkout of REF instead of HEAD (to bisect)
  --profile DIR        run the servers with --cpu-prof, profiles written to DIR (one per server process)
  --write / --no-write replace the section in docs/benchmarks.md (default: only for a standard run)
`;

const STANDARD = {
  levels: [500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000],
  clients: 50,
  warmupMs: 1500,
  measureMs: 5000,
  tailMs: 500,
  drainMs: 3000,
  repeats: 3,
  idleConnections: 2000,
};

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      levels: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      clients: { type: 'string' },
      repeats: { type: 'string' },
      connections: { type: 'string' },
      servers: { type: 'string' },
      'no-fanout': { type: 'boolean' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean' },
      profile: { type: 'string' },
      baseline: { type: 'string' },
      candidate: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';

  const quick = values.quick ?? false;
  const tuned = ['levels', 'duration', 'warmup', 'clients', 'repeats', 'connections', 'servers', 'no-fanout', 'profile', 'baseline', 'candidate'].some(
    (k) => values[k as keyof typeof values] !== undefined,
  );
  const standard = !quick && !tuned;
  const options: BenchOptions = {
    servers: values.servers
      ? list(values.servers).map(serverKind)
      : SERVER_KINDS.filter((k) => k !== 'capsync-baseline' || values.baseline !== undefined),
    levels: values.levels ? list(values.levels).map((v) => positive('--levels', v)) : quick ? [500, 1500, 3000] : STANDARD.levels,
    clients: values.clients ? positive('--clients', values.clients) : STANDARD.clients,
    warmupMs: values.warmup ? seconds('--warmup', values.warmup) : quick ? 500 : STANDARD.warmupMs,
    measureMs: values.duration ? seconds('--duration', values.duration) : quick ? 2000 : STANDARD.measureMs,
    repeats: values.repeats ? count('--repeats', values.repeats) || 1 : quick ? 1 : STANDARD.repeats,
    tailMs: STANDARD.tailMs,
    drainMs: STANDARD.drainMs,
    idleConnections: values.connections !== undefined ? count('--connections', values.connections) : quick ? 500 : STANDARD.idleConnections,
    fanOut: !values['no-fanout'],
    write: values['no-write'] ? false : (values.write ?? standard),
    standard,
    ...(values.baseline ? { baseline: values.baseline } : {}),
    candidate: values.candidate ?? 'HEAD',
    serverNodeArgs: values.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values.profile)}`] : [],
  };
  if (options.servers.includes('capsync-baseline') && !options.baseline) throw new RangeError('capsync-baseline needs --baseline <git-ref>');
  if (values.candidate !== undefined && !options.baseline) throw new RangeError('--candidate needs --baseline <git-ref>');
  if (options.clients < 2) throw new RangeError('--clients must be at least 2 (one sender, one receiver)');
  return options;
}

function serverKind(v: string): (typeof SERVER_KINDS)[number] {
  if (!(SERVER_KINDS as readonly string[]).includes(v)) throw new RangeError(`unknown server "${v}"; known: ${SERVER_KINDS.join(', ')}`);
  return v as (typeof SERVER_KINDS)[number];
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${flag} expects positive numbers, got "${v}"`);
  return n;
}

function count(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${flag} expects a whole number, got "${v}"`);
  return n;
}

function seconds(flag: string, v: string): number {
  return Math.round(positive(flag, v) * 1000);
}
