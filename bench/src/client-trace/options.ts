/** Command-line options of `client-trace.ts`. */
import { parseArgs } from 'node:util';
import type { RelayStorage } from './relay.js';
import { list } from '../cli-args.js';

export const PARTS = ['node-memory', 'node-indexeddb', 'burst', 'concurrent', 'chromium'] as const;
export type Part = (typeof PARTS)[number];

export interface ClientTraceOptions {
  /** Replay only the first this many patches of automerge-paper (null: all of them). */
  patches: number | null;
  /** Runs of every end-to-end measurement (medians are reported). */
  runs: number;
  /** Rounds of the local replay comparison (plain Yjs, offline client, connected client). */
  overheadRuns: number;
  /** Cold opens after each IndexedDB run. */
  coldOpens: number;
  /** Sizes (patches) of the bursts: the first patches of the trace in one task. */
  bursts: number[];
  parts: Part[];
  relayStorage: RelayStorage;
  /** Replace the section in docs/benchmarks.md. */
  write: boolean;
  /** True when the run is the standard one (`npm run bench:client` without flags). */
  standard: boolean;
  quick: boolean;
}

/** Patches replayed by --quick: enough to exercise every path, small enough for well under a minute. */
export const QUICK_PATCHES = 10_000;

export const USAGE = `usage: npm run bench:client [-- options]

  --quick              the first ${QUICK_PATCHES} patches of automerge-paper, 1 run of everything, 3 cold opens,
                       no waiting for a quiet machine; no docs update
  --patches N          replay only the first N patches of automerge-paper
  --runs 3             runs of every end-to-end measurement (medians reported)
  --overhead-runs 5    rounds of the local replay comparison (plain Yjs, offline and connected client)
  --cold-opens 5       cold opens from IndexedDB after each IndexedDB run
  --bursts 2500,5000   burst sizes: the first N patches in one task (default 2500,5000,10000,20000)
  --parts a,b          subset of: ${PARTS.join(', ')} (the plain-Yjs baseline always runs)
  --relay-storage s    sqlite (default) or memory
  --write / --no-write replace the client-trace section in docs/benchmarks.md (default: only for a standard run)
`;

const STANDARD = { runs: 3, overheadRuns: 5, coldOpens: 5, bursts: [2500, 5000, 10_000, 20_000] };
const QUICK_BURSTS = [1000, 2000];

export function parseOptions(argv: string[]): ClientTraceOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      patches: { type: 'string' },
      runs: { type: 'string' },
      'overhead-runs': { type: 'string' },
      'cold-opens': { type: 'string' },
      bursts: { type: 'string' },
      parts: { type: 'string' },
      'relay-storage': { type: 'string' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const quick = values.quick ?? false;
  const tuned = ['patches', 'runs', 'overhead-runs', 'cold-opens', 'bursts', 'parts', 'relay-storage'].some((k) => values[k as keyof typeof values] !== undefined);
  const standard = !quick && !tuned;
  return {
    patches: values.patches !== undefined ? positive('--patches', values.patches) : quick ? QUICK_PATCHES : null,
    runs: values.runs !== undefined ? positive('--runs', values.runs) : quick ? 1 : STANDARD.runs,
    overheadRuns: values['overhead-runs'] !== undefined ? positive('--overhead-runs', values['overhead-runs']) : quick ? 1 : STANDARD.overheadRuns,
    coldOpens: values['cold-opens'] !== undefined ? positive('--cold-opens', values['cold-opens']) : quick ? 3 : STANDARD.coldOpens,
    bursts: values.bursts ? list(values.bursts).map((v) => positive('--bursts', v)) : quick ? QUICK_BURSTS : STANDARD.bursts,
    parts: values.parts ? list(values.parts).map(part) : [...PARTS],
    relayStorage: relayStorage(values['relay-storage'] ?? 'sqlite'),
    write: values['no-write'] ? false : (values.write ?? standard),
    standard,
    quick,
  };
}

function part(v: string): Part {
  if (!(PARTS as readonly string[]).includes(v)) throw new RangeError(`unknown part "${v}"; known: ${PARTS.join(', ')}`);
  return v as Part;
}

function relayStorage(v: string): RelayStorage {
  if (v !== 'sqlite' && v !== 'memory') throw new RangeError(`--relay-storage expects sqlite or memory, got "${v}"`);
  return v;
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${flag} expects a positive whole number, got "${v}"`);
  return n;
}
