/** The cluster benchmark's results as Markdown (docs/benchmarks.md, also printed). */
import type { FsyncProbe } from '../locks/fsync-probe.js';
import type { Machine } from '../machine.js';
import { SUSTAINED_DELIVERED_PCT, SUSTAINED_P99_MS } from '../targets.js';
import type { LevelResult } from './level.js';
import type { ClusterOptions } from './options.js';
import { SYSTEM_LABELS, type SystemName } from './systems.js';

/** The issue's targets for cluster mode. */
export const CLUSTER_TARGETS = {
  /** capsync cross-relay p99 at most this many ms... */
  crossP99Ms: 10,
  /** ...at this offered load (workload A). */
  crossP99At: 1000,
};

export interface RunResult {
  run: number;
  a: Map<SystemName, LevelResult[]>;
  b: Map<SystemName, { levels: LevelResult[]; connectSeconds: number }>;
}

export interface ReportInput {
  options: ClusterOptions;
  machine: Machine;
  code: string;
  date: Date;
  runSeconds: number;
  postgres: string;
  redis: string;
  fsync: FsyncProbe;
  runs: RunResult[];
}

const PG: SystemName = 'capsync-postgres';
const HP: SystemName = 'hocuspocus-redis';
const SQ: SystemName = 'capsync-sqlite';

function sustained(l: LevelResult): boolean {
  return l.cross.p99Ms <= SUSTAINED_P99_MS && l.cross.deliveredPct >= SUSTAINED_DELIVERED_PCT && l.missingAtEnd === 0;
}

/** A weaker criterion, for a machine where nobody reaches the p99 one: cross p50 <= 20 ms, >= 99 % delivered, nothing lost. */
function medianHeld(l: LevelResult): boolean {
  return l.cross.p50Ms <= SUSTAINED_P99_MS && l.cross.deliveredPct >= SUSTAINED_DELIVERED_PCT && l.missingAtEnd === 0;
}

/** Highest offered load sustained, and whether it was the top level run (then: at least that). */
function highest(levels: LevelResult[] | undefined, ok_ = sustained): { load: number; top: boolean } | null {
  if (!levels || levels.length === 0) return null;
  const ok = levels.filter(ok_);
  if (ok.length === 0) return { load: 0, top: false };
  const load = Math.max(...ok.map((l) => l.offered));
  return { load, top: load === Math.max(...levels.map((l) => l.offered)) };
}

const ms = (v: number): string => (!Number.isFinite(v) ? '-' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const pct = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)} %` : '-');
const num = (v: number, digits = 0): string => (Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-');

function sustainedText(h: { load: number; top: boolean } | null): string {
  if (!h) return 'not run';
  if (h.load === 0) return 'none of the levels';
  return `${h.load}/s${h.top ? ' (the top level: at least this)' : ''}`;
}

function ratio(a: { load: number; top: boolean } | null, b: { load: number; top: boolean } | null): string {
  if (!a || !b) return '-';
  if (b.load === 0) return a.load === 0 ? 'both sustained none' : `${a.load} / none`;
  const r = a.load / b.load;
  const note = a.top && b.top ? ' (both at the top level)' : a.top ? ' (capsync at the top level: at least this)' : '';
  return `${a.load} / ${b.load} = ${r.toFixed(2)}${note}`;
}

function levelAt(levels: LevelResult[] | undefined, load: number): LevelResult | undefined {
  return levels?.find((l) => l.offered === load);
}

export function renderReport(r: ReportInput): string {
  const { options: o, machine: m } = r;
  const parts: string[] = [];
  parts.push('## Cluster on PostgreSQL (bench:cluster)');
  const others = r.runs.flatMap((run) => [...run.a.values(), ...[...run.b.values()].map((b) => b.levels)].flat()).map((l) => l.otherCpuPct);
  const sortedOthers = others.filter(Number.isFinite).sort((a, b) => a - b);
  const median = sortedOthers[Math.floor(sortedOthers.length / 2)] ?? Number.NaN;
  parts.push(
    [
      `Command: \`npm run bench:cluster\` (bench/cluster.ts)${o.write ? '' : ' (non-standard flags)'}; ${o.runs} run${o.runs > 1 ? 's' : ''} of the whole benchmark, each reported.`,
      `Run: ${r.date.toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round(r.runSeconds)} s, on ${r.code}.`,
      `Machine: ${m.cpu}, ${m.cores} cores (\`nproc\`), ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.os}, Node ${m.node}; ${r.postgres}; ${r.redis.split(' ').slice(0, 3).join(' ')}.`,
      `Shared machine: other processes (other agents' tests and benchmarks) used a median of ${pct(median)} of one core per measured window (max ${pct(sortedOthers.at(-1) ?? Number.NaN)}); before each level the bench waits up to 3 s for them to use less than 20 %. A 4 KB write + fsync in the temp directory took p50 ${ms(r.fsync.p50Ms)} ms, p99 ${ms(r.fsync.p99Ms)} ms (${r.fsync.samples} samples): the floor under every durable commit here.`,
    ].join('  \n'),
  );
  parts.push(setup(o));
  parts.push('### Summary\n\n' + summary(r));
  for (const run of r.runs) {
    parts.push(`### Run ${run.run}, workload A: ${o.clientsA} clients in one document, ${o.writersA} writer${o.writersA > 1 ? 's' : ''} on instance 1 (in turn)\n\n` + levelTable([...run.a].map(([s, ls]) => [s, ls]), o.loadsA));
    parts.push(`### Run ${run.run}, workload B: ${o.docsB} documents × 4 clients (two per instance)\n\n` + levelTable([...run.b].map(([s, b]) => [s, b.levels]), o.loadsB));
    const pgRows = [...(run.a.get(PG) ?? []).map((l) => ['A', l] as const), ...(run.b.get(PG)?.levels ?? []).map((l) => ['B', l] as const)];
    if (pgRows.length > 0) parts.push(`### Run ${run.run}: PostgreSQL's cost per update (capsync, cluster mode)\n\n` + costTable(pgRows));
  }
  return parts.join('\n\n') + '\n';
}

function setup(o: ClusterOptions): string {
  return [
    '**Setup.** Servers run as Node processes of their own on 127.0.0.1 (port 0), started by the bench:',
    `*${PG}* = ${SYSTEM_LABELS[PG]}: two relays (\`createRelay({ postgres: url${process.env['BENCH_PREVIEWS'] === '1' ? ', clusterPreviews: true' : ''} })\`, ${process.env['BENCH_DIST'] ? "the packages' build output, dist, as \`npm start\` runs it" : "the packages' source through tsx"}) on one database of a throwaway`,
    'PostgreSQL (initdb in a temp directory, a free port, removed after) with its durable defaults: fsync on, `synchronous_commit = on`,',
    'so a relay acknowledges and notifies only after the WAL is flushed; `pg_stat_statements` loaded to count statements.',
    `*${HP}* = ${SYSTEM_LABELS[HP]}: \`@hocuspocus/server\` 4 (\`Server\`, in memory, no database extension) with \`@hocuspocus/extension-redis\` on one`,
    "Debian `redis-server` (a child of the bench, `--save '' --appendonly no`). *" + SQ + '* = ' + SYSTEM_LABELS[SQ] + ' (fsync per commit), the',
    'baseline: both groups of clients connect to it, so its "cross-instance" deliveries are plain fan-out.',
    'Clients are raw protocol clients in the bench process, one WebSocket per client and document, no provider: the y-websocket sync',
    "protocol for capsync, Hocuspocus's (document name before every message, an auth message and sync step 1 first) for Hocuspocus.",
    'Each update inserts a marker `~client:seq:sendMicros;` at the end of a Y.Text; receivers find the markers in the frames without',
    "applying them (bench/src/wire.ts), latency is send to receipt on the bench's clock. Sends are paced open-loop by a 1 ms timer.",
    `Each system, once started, first runs an unreported level (3 s at the lowest load). Per level: ${o.warmupMs / 1000} s warm-up, ${o.measureMs / 1000} s measured (latency and delivered % count the updates sent in it), ${o.tailMs / 1000} s more at the`,
    `same load, then up to ${o.drainMs / 1000} s for every delivery of every update of the level; what is still missing then is waited for`,
    `${o.lateMs / 1000} s more (*missing*: deliveries between clients that stayed connected, after the drain / at the end). A server may close`,
    'connections (capsync: 4429 slow consumer, when a client does not read fast enough); *relays\' state*: after each level the',
    'document(s) (workload B: 50 of them) are fetched from every capsync relay (`GET /v1/docs/:name/update`) and the markers counted:',
    'updates sent by clients that stayed connected missing from a relay, and updates one relay holds and another lacks. *Cross* = deliveries to clients of the other',
    'instance (through PostgreSQL or Redis); *same* = to clients of the sender\'s instance. Sustained = cross p99 ≤ ' + SUSTAINED_P99_MS + ' ms, ≥ ' + SUSTAINED_DELIVERED_PCT + ' % delivered,',
    'nothing lost. CPU columns: percent of one core in the window; servers = both instances; store = PostgreSQL (postmaster and',
    'backends) or Redis; gen = the bench process (clients); other = the rest of the machine.',
    `Workload A: ${o.clientsA} clients in one document, ${o.clientsA / 2} on each instance; ${o.writersA === o.clientsA / 2 ? `the ${o.writersA} clients of instance 1 write in turn` : `${o.writersA} client(s) of instance 1 write in turn`}, so every update has ${o.clientsA / 2} receivers on instance 2 (cross) and the`,
    `other ${o.clientsA / 2 - 1} on instance 1 (same); a fresh document per level. (One client writing everything cannot: its own Y.Text merges the`,
    'markers into one growing string that every update encoding slices, ~1.5 ms per insert at 10,000 markers.)',
    `Workload B: ${o.docsB} documents with 4 clients each (two per instance), connected once for all levels; update n goes to document`,
    'n mod N from its clients in turn, so each update has two cross-instance receivers and one on its own instance.',
    "PostgreSQL's cost per update: deltas over the whole level (all updates sent) of `pg_current_wal_lsn()` (WAL bytes),",
    '`pg_stat_statements` calls (statements; the bench\'s own left out) and `pg_stat_database` xact_commit / tup_inserted',
    '(these two are flushed by backends late, up to seconds: approximate).',
  ].join('\n');
}

function summary(r: ReportInput): string {
  const rows: string[][] = [];
  const runs = r.runs;
  const perRun = (f: (run: RunResult) => string): string => runs.map((run) => (runs.length > 1 ? `run ${run.run}: ` : '') + f(run)).join('<br>');
  const at = CLUSTER_TARGETS.crossP99At;
  const p99At = (run: RunResult, s: SystemName): number => levelAt(run.a.get(s), at)?.cross.p99Ms ?? Number.NaN;
  const metP99 = runs.every((run) => p99At(run, PG) <= CLUSTER_TARGETS.crossP99Ms);
  rows.push([
    `capsync cross-relay p99 ≤ ${CLUSTER_TARGETS.crossP99Ms} ms at ${at} updates/s (workload A)`,
    perRun((run) => `${ms(p99At(run, PG))} ms (p50 ${ms(levelAt(run.a.get(PG), at)?.cross.p50Ms ?? Number.NaN)} ms)`),
    metP99 ? 'yes' : '**no**',
  ]);
  const hA = (run: RunResult, s: SystemName) => highest(run.a.get(s));
  const metLoad = runs.every((run) => {
    const c = hA(run, PG);
    const h = hA(run, HP);
    return !!c && !!h && c.load > 0 && c.load >= h.load;
  });
  rows.push(['capsync highest sustained load ≥ Hocuspocus + Redis\'s (workload A)', perRun((run) => ratio(hA(run, PG), hA(run, HP))), metLoad ? 'yes' : '**no**']);
  rows.push([
    `Highest sustained load, workload A (cross p99 ≤ ${SUSTAINED_P99_MS} ms)`,
    perRun((run) => [...run.a.keys()].map((s) => `${s} ${sustainedText(hA(run, s))}`).join(', ')),
    '',
  ]);
  rows.push([`capsync cluster / single SQLite relay, workload A sustained load`, perRun((run) => ratio(hA(run, PG), hA(run, SQ))), '']);
  const mA = (run: RunResult, s: SystemName) => highest(run.a.get(s), medianHeld);
  rows.push([
    `Weaker, for this shared machine: highest load with cross p50 ≤ ${SUSTAINED_P99_MS} ms, workload A`,
    perRun((run) => [...run.a.keys()].map((s) => `${s} ${sustainedText(mA(run, s))}`).join(', ') + `; capsync cluster / Hocuspocus + Redis ${ratio(mA(run, PG), mA(run, HP))}`),
    '',
  ]);
  rows.push([
    `p99 at ${at}/s: capsync cluster vs Hocuspocus + Redis vs single SQLite relay`,
    perRun((run) => `${ms(p99At(run, PG))} / ${ms(p99At(run, HP))} / ${ms(p99At(run, SQ))} ms`),
    '',
  ]);
  const hB = (run: RunResult, s: SystemName) => highest(run.b.get(s)?.levels);
  rows.push([
    `Sustained updates/s, workload B (${r.options.docsB} documents × 4 clients)`,
    perRun((run) => [...run.b.keys()].map((s) => `${s} ${sustainedText(hB(run, s))}`).join(', ')),
    '',
  ]);
  rows.push(['capsync cluster / Hocuspocus + Redis, workload B', perRun((run) => ratio(hB(run, PG), hB(run, HP))), '']);
  const mB = (run: RunResult, s: SystemName) => highest(run.b.get(s)?.levels, medianHeld);
  rows.push([
    `Weaker: highest load with cross p50 ≤ ${SUSTAINED_P99_MS} ms, workload B`,
    perRun((run) => [...run.b.keys()].map((s) => `${s} ${sustainedText(mB(run, s))}`).join(', ') + `; capsync cluster / Hocuspocus + Redis ${ratio(mB(run, PG), mB(run, HP))}`),
    '',
  ]);
  rows.push(['capsync cluster / single SQLite relay, workload B', perRun((run) => ratio(hB(run, PG), hB(run, SQ))), '']);
  const topB = (run: RunResult): LevelResult | undefined => {
    const levels = run.b.get(PG)?.levels ?? [];
    return levels.at(-1);
  };
  rows.push([
    'PostgreSQL per update, workload B at its top level: statements / commits / WAL bytes',
    perRun((run) => {
      const l = topB(run);
      return l?.db ? `${l.offered}/s: ${num(l.db.statementsPerUpdate, 3)} / ${num(l.db.xactPerUpdate, 3)} / ${num(l.db.walBytesPerUpdate)} B` : '-';
    }),
    '',
  ]);
  rows.push([
    "capsync relays' state after each level (GET /v1/docs/:name/update from every relay): updates sent by connected clients missing / divergent between relays",
    perRun((run) =>
      [PG, SQ]
        .filter((s) => run.a.has(s) || run.b.has(s))
        .map((s) => {
          const ls = [...(run.a.get(s) ?? []), ...(run.b.get(s)?.levels ?? [])].filter((l) => l.stored);
          const missing = ls.reduce((n, l) => n + l.stored!.missingSomewhere, 0);
          const divergent = ls.reduce((n, l) => n + l.stored!.divergent, 0);
          const sent = ls.reduce((n, l) => n + l.stored!.sent, 0);
          return `${s} ${missing} / ${divergent} of ${num(sent)}`;
        })
        .join(', '),
    ),
    '',
  ]);
  rows.push([
    'Connections closed by the server (close code), all levels',
    perRun((run) =>
      [...new Set([...run.a.keys(), ...run.b.keys()])]
        .map((s) => {
          const codes = new Map<number, number>();
          for (const l of [...(run.a.get(s) ?? []), ...(run.b.get(s)?.levels ?? [])]) for (const [c, n] of l.closeCodes) codes.set(c, (codes.get(c) ?? 0) + n);
          return `${s} ${codes.size === 0 ? 0 : [...codes].map(([c, n]) => `${n} (${c})`).join(', ')}`;
        })
        .join(', '),
    ),
    '',
  ]);
  rows.push([
    'Deliveries between connected clients missing after the drain (late) / at the end (lost), all levels',
    perRun((run) =>
      [...new Set([...run.a.keys(), ...run.b.keys()])]
        .map((s) => {
          const ls = [...(run.a.get(s) ?? []), ...(run.b.get(s)?.levels ?? [])];
          return `${s} ${ls.reduce((n, l) => n + l.missingAfterDrain, 0)} / ${ls.reduce((n, l) => n + l.missingAtEnd, 0)}`;
        })
        .join(', '),
    ),
    '',
  ]);
  return table(['Target', 'Measured', 'Met'], rows);
}

function levelTable(bySystem: [SystemName, LevelResult[]][], loads: number[]): string {
  const rows: string[][] = [];
  for (const load of loads) {
    for (const [s, levels] of bySystem) {
      const l = levelAt(levels, load);
      if (!l) continue;
      rows.push([
        String(load),
        s,
        num(l.sentPerSec),
        ms(l.cross.p50Ms),
        ms(l.cross.p99Ms),
        ms(l.cross.maxMs),
        `${l.cross.deliveredPct.toFixed(2)} %`,
        l.local ? `${ms(l.local.p50Ms)} / ${ms(l.local.p99Ms)}` : '-',
        l.missingAfterDrain === 0 ? '0' : `${l.missingAfterDrain} / ${l.missingAtEnd}`,
        l.closedByServer === 0 ? '0' : l.closeCodes.map(([code, n]) => `${n} (${code})`).join(', '),
        l.stored ? storedText(l) : '-',
        pct(l.serverCpuPct),
        s === SQ ? '-' : pct(l.storeCpuPct),
        pct(l.generatorCpuPct),
        pct(l.otherCpuPct),
        ms(l.generatorLagP99Ms),
        sustained(l) ? 'yes' : 'no',
      ]);
    }
  }
  return table(
    ['Offered/s', 'System', 'Sent/s', 'Cross p50 ms', 'Cross p99 ms', 'Cross max ms', 'Cross delivered', 'Same p50 / p99 ms', 'Missing', 'Closed by server', 'Relays\' state', 'Servers CPU', 'Store CPU', 'Gen CPU', 'Other CPU', 'Gen lag p99 ms', 'Sustained'],
    rows,
  );
}

function storedText(l: LevelResult): string {
  const st = l.stored!;
  if (st.docs === 0) return st.unreadable > 0 ? `${st.unreadable} doc(s) not served` : '-';
  const ok = st.missingSomewhere === 0 && st.divergent === 0;
  return (
    (ok ? `all ${num(st.sent)} in every relay` : `${st.missingEverywhere} missing in all, ${st.missingSomewhere} in some; ${st.divergent} divergent, of ${num(st.sent)}`) +
    (st.docs > 1 ? ` (${st.docs} docs)` : '') +
    (st.unreadable ? `; ${st.unreadable} not served` : '')
  );
}

function costTable(rows: (readonly ['A' | 'B', LevelResult])[]): string {
  return (
    table(
      ['Workload', 'Offered/s', 'Updates', 'Statements / update', 'of which', 'Commits / update', 'Rows inserted / update', 'WAL bytes / update', 'Catch-up reads', 'Note lag mean ms', 'Commit wait mean ms (capsync_persist_seconds)'],
      rows.map(([w, l]) => [
        w,
        String(l.offered),
        num(l.sentTotal),
        l.db ? num(l.db.statementsPerUpdate, 3) : '-',
        l.db ? l.db.byKind.slice(0, 4).map(([k, v]) => `${k} ${num(v, 3)}`).join('; ') : '-',
        l.db ? num(l.db.xactPerUpdate, 3) : '-',
        l.db ? num(l.db.rowsPerUpdate, 2) : '-',
        l.db ? num(l.db.walBytesPerUpdate) : '-',
        l.relay ? String(l.relay.catchUpReads) : '-',
        l.relay ? ms(l.relay.noteLagMeanMs) : '-',
        l.relay ? ms(l.relay.persistMeanMs) : '-',
      ]),
    ) +
    '\n\nStatements by kind: *append* = the group-commit INSERT of a batch of updates with its NOTIFY (postgres-append.ts); *catch-up read* = a follower reading the log (notes too large to carry the updates inline: more than 64 updates or 4 KB in one batch, or a gap); *compaction* counts its two statements; BEGIN/COMMIT are those of compactions. Note lag: from the writing relay sending the statement to the other relay applying the change, for changes that came inline in a note (the relay\'s `capsync_cluster_notification_lag_seconds`).'
  );
}

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}
