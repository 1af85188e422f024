/** Command-line options of `cluster.ts`. */
import { parseArgs } from 'node:util';
import { list } from '../cli-args.js';
import { SYSTEMS, type SystemName } from './systems.js';

export interface ClusterOptions {
  runs: number;
  systems: SystemName[];
  /** Workload A: offered loads (updates/s), clients in the document, writing clients (on instance 0). */
  loadsA: number[];
  clientsA: number;
  writersA: number;
  /** Workload B: offered loads (updates/s over all documents), documents (4 clients each). */
  loadsB: number[];
  docsB: number;
  warmupMs: number;
  measureMs: number;
  tailMs: number;
  drainMs: number;
  lateMs: number;
  write: boolean;
}

export const USAGE = `usage: npm run bench:cluster [-- options]

  --quick              one run, shorter levels, 100 documents in workload B; no docs update
  --runs 2             times the whole benchmark runs (each reported)
  --systems a,b        subset of: ${SYSTEMS.join(', ')}
  --loads-a 500,1000,2000,4000   workload A offered loads, updates/s
  --clients-a 50       clients in workload A's document (half on each instance)
  --writers-a 25       clients of instance 1 that write in workload A (round robin; default: all of them)
  --loads-b 500,1000,2000,4000   workload B offered loads, updates/s over all documents
  --docs-b 1000        documents of workload B (4 clients each, 2 per instance)
  --measure-ms 5000    measured window per level (after 1 s warm-up)
  --write / --no-write replace the section in docs/benchmarks.md (default: only for a standard run)
`;

const STANDARD = { runs: 2, loadsA: [500, 1000, 2000, 4000], loadsB: [500, 1000, 2000, 4000], docsB: 1000, measureMs: 5_000 };

export function parseOptions(argv: string[]): ClusterOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      systems: { type: 'string' },
      'loads-a': { type: 'string' },
      'clients-a': { type: 'string' },
      'writers-a': { type: 'string' },
      'loads-b': { type: 'string' },
      'docs-b': { type: 'string' },
      'measure-ms': { type: 'string' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const quick = values.quick ?? false;
  const { quick: _q, write: _w, 'no-write': _nw, help: _h, ...rest } = values;
  const standard = !quick && Object.values(rest).every((v) => v === undefined);
  const systems = values.systems ? list(values.systems) : [...SYSTEMS];
  for (const s of systems) if (!(SYSTEMS as readonly string[]).includes(s)) throw new RangeError(`unknown system "${s}"; known: ${SYSTEMS.join(', ')}`);
  const clientsA = values['clients-a'] ? whole('--clients-a', values['clients-a']) : 50;
  if (clientsA < 2 || clientsA % 2 !== 0) throw new RangeError('--clients-a must be even and at least 2');
  return {
    runs: values.runs ? whole('--runs', values.runs) : quick ? 1 : STANDARD.runs,
    systems: systems as SystemName[],
    loadsA: values['loads-a'] ? list(values['loads-a']).map((v) => whole('--loads-a', v)) : STANDARD.loadsA,
    clientsA,
    // All of instance 1's clients write, in turn: one client appending thousands of markers to its
    // own Y.Text becomes the bottleneck (Yjs merges them into one growing string, and encoding
    // each update slices it: ~1.5 ms per insert at 10,000 markers, ~6 ms at 20,000).
    writersA: values['writers-a'] ? whole('--writers-a', values['writers-a']) : clientsA / 2,
    loadsB: values['loads-b'] ? list(values['loads-b']).map((v) => whole('--loads-b', v)) : STANDARD.loadsB,
    docsB: values['docs-b'] ? whole('--docs-b', values['docs-b']) : quick ? 100 : STANDARD.docsB,
    warmupMs: quick ? 500 : 1_000,
    measureMs: values['measure-ms'] ? whole('--measure-ms', values['measure-ms']) : quick ? 2_000 : STANDARD.measureMs,
    tailMs: 500,
    drainMs: 3_000,
    lateMs: 10_000,
    write: values['no-write'] ? false : (values.write ?? standard),
  };
}

function whole(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${flag} wants a positive whole number (got ${v})`);
  return n;
}
