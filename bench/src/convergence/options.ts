/** Command-line options of `convergence.ts`. */
import { parseArgs } from 'node:util';
import { list } from '../cli-args.js';

export interface ConvergenceOptions {
  /** Divergent updates made on each side during the partition, one point per size. */
  sizes: number[];
  /** Shared history (updates made before the partition) of the history variant; 0 = no variant. */
  history: number;
  /** Divergent updates per side on top of the history. */
  historyDiff: number;
  /** Measurements per point (the median is reported). */
  repeats: number;
  /** Unacknowledged updates a writing client may have in flight. */
  window: number;
  /** Give up on a convergence after this long. */
  timeoutMs: number;
  storage: 'sqlite' | 'memory';
  waitForQuiet: boolean;
  write: boolean;
  standard: boolean;
  quick: boolean;
}

export const STANDARD = { sizes: [1_000, 10_000, 100_000], history: 100_000, historyDiff: 1_000, repeats: 3 };
export const QUICK = { sizes: [1_000, 10_000], history: 10_000, historyDiff: 1_000, repeats: 2 };
export const DEFAULT_WINDOW = 1_000;
export const DEFAULT_TIMEOUT_MS = 120_000;

export const USAGE = `usage: npm run bench:converge [-- options]

  --quick              sizes ${QUICK.sizes.join(',')}, history ${QUICK.history}, ${QUICK.repeats} runs per point,
                       no waiting for a quiet machine; no docs update
  --sizes a,b,...      divergent updates per side, one point each (default ${STANDARD.sizes.join(',')})
  --history N          shared history of the history variant, 0 for none (default ${STANDARD.history})
  --history-diff N     divergent updates per side on top of it (default ${STANDARD.historyDiff})
  --repeats N          runs per point; the median is reported (default ${STANDARD.repeats})
  --window N           unacknowledged updates a writing client keeps in flight (default ${DEFAULT_WINDOW})
  --timeout-ms N       give up on one convergence after this long (default ${DEFAULT_TIMEOUT_MS})
  --storage s          the relays' storage: sqlite (default, the CLI's default) or memory
  --write / --no-write replace the convergence section in docs/benchmarks.md (default: only for a standard run)
`;

export function parseOptions(argv: string[]): ConvergenceOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      sizes: { type: 'string' },
      history: { type: 'string' },
      'history-diff': { type: 'string' },
      repeats: { type: 'string' },
      window: { type: 'string' },
      'timeout-ms': { type: 'string' },
      storage: { type: 'string' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const quick = values.quick ?? false;
  const tuned = ['sizes', 'history', 'history-diff', 'repeats', 'window', 'timeout-ms', 'storage'].some((k) => values[k as keyof typeof values] !== undefined);
  const standard = !quick && !tuned;
  const base = quick ? QUICK : STANDARD;
  const storage = values.storage ?? 'sqlite';
  if (storage !== 'sqlite' && storage !== 'memory') throw new RangeError(`--storage must be sqlite or memory, got "${storage}"`);
  const options: ConvergenceOptions = {
    sizes: values.sizes !== undefined ? list(values.sizes).map((v) => positive('--sizes', v)) : [...base.sizes],
    history: values.history !== undefined ? whole('--history', values.history) : base.history,
    historyDiff: values['history-diff'] !== undefined ? positive('--history-diff', values['history-diff']) : base.historyDiff,
    repeats: values.repeats !== undefined ? positive('--repeats', values.repeats) : base.repeats,
    window: values.window !== undefined ? positive('--window', values.window) : DEFAULT_WINDOW,
    timeoutMs: values['timeout-ms'] !== undefined ? positive('--timeout-ms', values['timeout-ms']) : DEFAULT_TIMEOUT_MS,
    storage,
    waitForQuiet: !quick,
    write: values['no-write'] ? false : (values.write ?? standard),
    standard,
    quick,
  };
  if (options.sizes.length === 0) throw new RangeError('--sizes needs at least one size');
  return options;
}

function positive(flag: string, v: string): number {
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${flag} expects positive whole numbers, got "${v}"`);
  return n;
}

function whole(flag: string, v: string): number {
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${flag} expects a whole number, got "${v}"`);
  return n;
}
