/** Command-line options of `mux.ts`. */
import { parseArgs } from 'node:util';
import { list } from '../cli-args.js';

export interface MuxOptions {
  /** Documents one client opens, one measurement per count. */
  counts: number[];
  /** Rounds of the open-N measurement (the median is reported). */
  rounds: number;
  /** Size of the large document of the head-of-line measurement, bytes of text. */
  bigBytes: number;
  /** Seed of the document contents. */
  seed: number;
  /** Milliseconds between two small edits while the large document syncs. */
  probeEveryMs: number;
  /** Give up on any one wait after this long. */
  timeoutMs: number;
  /** Replace the section in docs/benchmarks.md. */
  write: boolean;
  standard: boolean;
}

export const USAGE = `usage: npm run bench:mux [-- options]

  --quick              20 and 100 documents, one round, a 2 MB large document; no docs update
  --rounds 5           rounds of the open-N measurement (the median is reported)
  --counts 100,1000    documents one client opens (one measurement each)
  --big-mb 10          size of the large document (head-of-line measurement), MB
  --seed 12            seed of the document contents
  --write / --no-write replace the section in docs/benchmarks.md (default: only for a standard run)
`;

const STANDARD = { counts: [100, 1000], rounds: 5, bigBytes: 10 * 1024 * 1024, seed: 12 };

export function parseOptions(argv: string[]): MuxOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      counts: { type: 'string' },
      rounds: { type: 'string' },
      'big-mb': { type: 'string' },
      seed: { type: 'string' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const quick = values.quick ?? false;
  const standard = !quick && values.counts === undefined && values.rounds === undefined && values['big-mb'] === undefined && values.seed === undefined;
  return {
    counts: values.counts ? list(values.counts).map((v) => whole('--counts', v)) : quick ? [20, 100] : STANDARD.counts,
    rounds: values.rounds ? whole('--rounds', values.rounds) : quick ? 1 : STANDARD.rounds,
    bigBytes: values['big-mb'] ? Math.round(positive('--big-mb', values['big-mb']) * 1024 * 1024) : quick ? 2 * 1024 * 1024 : STANDARD.bigBytes,
    seed: values.seed ? whole('--seed', values.seed) : STANDARD.seed,
    probeEveryMs: 5,
    timeoutMs: 60_000,
    write: values['no-write'] ? false : (values.write ?? standard),
    standard,
  };
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${flag} expects a positive number, got "${v}"`);
  return n;
}

function whole(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${flag} expects positive whole numbers, got "${v}"`);
  return n;
}
