/**
 * Turns measurements into the Markdown section of docs/benchmarks.md (also printed): how it
 * was run, on what, the tables, and the targets of the issue with what was reached.
 */
import type { LevelResult } from './fan-out.js';
import { WARM_UP_CONNECTIONS, type IdleMemoryResult } from './idle-memory.js';
import type { Machine } from './machine.js';
import type { BenchOptions } from './options.js';
import type { MeasuredLevel } from './run-levels.js';
import { SERVER_LABELS, type ServerKind } from './server-process.js';
import { INTERFERENCE_CPU_PCT, SUSTAINED_DELIVERED_PCT, SUSTAINED_P99_MS, TARGETS } from './targets.js';

const CAPSYNC: ServerKind[] = ['capsync-sqlite', 'capsync-memory'];

export interface Report {
  options: BenchOptions;
  machine: Machine;
  /** The code measured (git commit). */
  code: string;
  date: Date;
  runSeconds: number;
  levels: MeasuredLevel[];
  memory: IdleMemoryResult[];
}

export function renderReport(r: Report): string {
  const { options: o, machine: m } = r;
  const parts: string[] = [];
  parts.push('## Relay fan-out and idle memory');
  parts.push(
    [
      `Command: \`npm run bench\`${o.standard ? '' : ' (non-standard flags: see setup)'} (bench/relay-load.ts).`,
      `Run: ${r.date.toISOString().slice(0, 10)}, ${Math.round(r.runSeconds)} s, on ${r.code}.`,
      `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.os}, Node ${m.node}.`,
    ].join('  \n'),
  );
  parts.push(setup(o));
  parts.push('### Summary\n\n' + summary(r));
  if (r.levels.length > 0) parts.push(`### Fan-out: ${o.clients} clients in one document\n\n` + fanOutTable(r.levels, o));
  if (r.memory.length > 0) parts.push(`### Idle connections\n\n` + memoryTable(r.memory));
  return parts.join('\n\n') + '\n';
}

function setup(o: BenchOptions): string {
  return [
    '**Setup.** Each server runs as its own Node process on 127.0.0.1 (port 0); the load generator',
    'is the bench process. Servers: ' + o.servers.map((s) => `${s} = ${SERVER_LABELS[s]}`).join('; ') + '.',
    `Fan-out: for every offered load (updates/s over all clients, paced open-loop by a 1 ms timer),`,
    `a freshly started server and a fresh document; ${o.clients} clients each insert a marker`,
    '`~client:seq:sendMicros;` at the end of a Y.Text in their own Y.Doc and send the update as a',
    'y-websocket sync-update message. Clients never apply what they receive: they find the markers',
    'in the received bytes, which also works when a server merges updates. Latency is send to receipt',
    `on the bench's clock. ${o.warmupMs / 1000} s warm-up, ${o.measureMs / 1000} s measured (only updates sent`,
    `in that window count), ${o.tailMs / 1000} s more at the same load, then up to ${o.drainMs / 1000} s to drain.`,
    'Delivered/s = deliveries / receivers / window seconds. CPU columns are percent of one core over the',
    "window ('-': the server was too busy to answer in time); kernel time spent on loopback TCP outside",
    'the processes is not in them. Load generator and server share the cores, so near saturation the',
    'generator is part of the limit; its event-loop delay (load-gen lag) adds to the measured latency.',
    'Other CPU is what all other processes on the machine used in the window. Each level first waits',
    `briefly for them to calm down; a level that still saw more than ${INTERFERENCE_CPU_PCT} % of a core is run again`,
    '(a few times per run at most) and the cleaner attempt kept.',
    ...(o.repeats > 1
      ? [`The ${TARGETS.p99CompareAt}/s level, where the p99 target is compared, is run ${o.repeats} times per server; the`, 'run with the median p99 is shown, and the summary lists all of them.']
      : []),
    ...(o.idleConnections > 0
      ? [
          `Idle memory: ${o.idleConnections} connections to one document, each idle after the server's sync`,
          `step 1; server RSS and heapUsed after a forced GC (--expose-gc), before and after (KB = 1024 bytes);`,
          `${WARM_UP_CONNECTIONS} warm-up connections to the same document stay open throughout, so the baseline`,
          'already holds the document and the compiled connection path.',
        ]
      : []),
  ].join('\n');
}

/** Highest offered load with p99 <= 20 ms and >= 99 % delivered, or null. */
export function sustainedLoad(levels: LevelResult[], server: ServerKind): number | null {
  const ok = levels.filter(
    (l) => l.server === server && l.p99Ms <= SUSTAINED_P99_MS && l.deliveredPct >= SUSTAINED_DELIVERED_PCT,
  );
  return ok.length === 0 ? null : Math.max(...ok.map((l) => l.offered));
}

function summary(r: Report): string {
  const rows: string[][] = [];
  const servers = r.options.servers;
  const topLevel = Math.max(...r.options.levels);
  const level = (server: ServerKind, offered: number): MeasuredLevel | undefined =>
    r.levels.find((l) => l.server === server && l.offered === offered);
  const capsyncs = CAPSYNC.filter((s) => servers.includes(s));

  if (r.levels.length > 0) {
    const at = TARGETS.p99CompareAt;
    const ref = level('reference', at);
    const runs = (l: MeasuredLevel): string => (l.p99Runs.length > 1 ? ` (runs: ${l.p99Runs.map(ms).join(', ')})` : '');
    for (const s of capsyncs) {
      const mine = level(s, at);
      const measured = mine && ref ? `${ms(mine.p99Ms)}${runs(mine)} vs ${ms(ref.p99Ms)}${runs(ref)} ms` : 'not measured';
      const met = mine && ref ? verdict(mine.p99Ms <= ref.p99Ms) : 'n/a';
      rows.push([`${s}: p99 at ${at}/s no worse than the reference${mine && mine.p99Runs.length > 1 ? ' (medians)' : ''}`, measured, met]);
    }

    const sustained = new Map(servers.map((s) => [s, sustainedLoad(r.levels, s)] as const));
    const shown = (s: ServerKind): string => {
      const v = sustained.get(s);
      if (v === undefined) return 'not run';
      if (v === null) return `none (p99 > ${SUSTAINED_P99_MS} ms already at ${Math.min(...r.options.levels)}/s)`;
      return v === topLevel ? `${v}/s (the top level: at least this)` : `${v}/s`;
    };
    rows.push([`Highest sustained load (p99 <= ${SUSTAINED_P99_MS} ms, >= ${SUSTAINED_DELIVERED_PCT} % delivered)`, servers.map((s) => `${s}: ${shown(s)}`).join('<br>'), '']);
    for (const s of capsyncs) {
      for (const [other, target] of [
        ['reference', TARGETS.sustainedVsReference],
        ['raw-ws', TARGETS.sustainedVsRaw],
      ] as const) {
        if (!servers.includes(other)) continue;
        rows.push([`${s}/${other} sustained load >= ${target}`, ...ratio(sustained.get(s) ?? null, sustained.get(other) ?? null, topLevel, target)]);
      }
    }
  }
  if (servers.includes('capsync-baseline')) rows.push(...baselineRows(r));
  for (const m of r.memory.filter((x) => CAPSYNC.includes(x.server))) {
    const kib = m.rssPerConnection / 1024;
    rows.push([
      `${m.server}: <= ${TARGETS.idleKiB} KB per idle connection (RSS)`,
      `${kib.toFixed(1)} KB RSS, ${(m.heapPerConnection / 1024).toFixed(1)} KB heap`,
      verdict(kib <= TARGETS.idleKiB),
    ]);
  }
  const disturbed = r.levels.filter((l) => l.otherCpuPct > INTERFERENCE_CPU_PCT);
  const note =
    disturbed.length === 0
      ? ''
      : `\n\nCaution: ${disturbed.length} level(s) still ran while other processes used more than ${INTERFERENCE_CPU_PCT} % of a core ` +
        `(${disturbed.map((l) => `${l.server} ${l.offered}/s: ${l.otherCpuPct.toFixed(0)} %`).join(', ')}); their numbers are pessimistic.`;
  return table(['Target', 'Measured', 'Met'], rows) + note;
}

/**
 * capsync now against capsync at the --baseline commit, measured in the same run: server CPU per
 * delivered update (geometric mean of the per-level ratios over levels both sustained), p99 at
 * the comparison level, sustained load and idle memory. Ratios are now / baseline: below 1 is
 * better now. The machine is shared and noisy: read a few percent either way as noise.
 */
function baselineRows(r: Report): string[][] {
  const now = 'capsync-sqlite';
  const base = 'capsync-baseline';
  const rows: string[][] = [];
  const find = (server: ServerKind, offered: number): MeasuredLevel | undefined => r.levels.find((l) => l.server === server && l.offered === offered);
  const sustainedOk = (l: MeasuredLevel | undefined): l is MeasuredLevel =>
    l !== undefined && l.p99Ms <= SUSTAINED_P99_MS && l.deliveredPct >= SUSTAINED_DELIVERED_PCT && Number.isFinite(l.serverCpuPct) && l.deliveredPerSec > 0;
  const cpuRatios: string[] = [];
  let logSum = 0;
  let n = 0;
  for (const offered of r.options.levels) {
    const a = find(now, offered);
    const b = find(base, offered);
    if (!sustainedOk(a) || !sustainedOk(b)) continue;
    const ratioAt = a.serverCpuPct / a.deliveredPerSec / (b.serverCpuPct / b.deliveredPerSec);
    cpuRatios.push(`${offered}/s: ${ratioAt.toFixed(2)}`);
    logSum += Math.log(ratioAt);
    n++;
  }
  if (n > 0) rows.push([`${now}/${base}: server CPU per delivered update (geometric mean)`, `${Math.exp(logSum / n).toFixed(2)} (${cpuRatios.join(', ')})`, '']);
  const at = TARGETS.p99CompareAt;
  const a = find(now, at);
  const b = find(base, at);
  if (a && b) rows.push([`${now}/${base}: p99 at ${at}/s`, `${ms(a.p99Ms)} / ${ms(b.p99Ms)} = ${(a.p99Ms / b.p99Ms).toFixed(2)}`, '']);
  if (a && b && a.p99Runs.length > 1) {
    // One run's p99 varies ~2x on this machine, and the median-p99 run's CPU is one sample:
    // the ratios of the runs made in the same round, as a median and a range, say more.
    rows.push([`${now}/${base}: per-round ratios at ${at}/s, median (range)`, `CPU per delivered update ${pairedRatios(a.cpuPerDeliveredRuns, b.cpuPerDeliveredRuns)}; p99 ${pairedRatios(a.p99Runs, b.p99Runs)}`, '']);
  }
  const sa = sustainedLoad(r.levels, now);
  const sb = sustainedLoad(r.levels, base);
  if (sa !== null && sb !== null) rows.push([`${now}/${base}: highest sustained load`, `${sa} / ${sb} = ${(sa / sb).toFixed(2)}${sa === sb && sa === Math.max(...r.options.levels) ? ' (both at the top level)' : ''}`, '']);
  const ma = r.memory.find((m) => m.server === now);
  const mb = r.memory.find((m) => m.server === base);
  if (ma && mb) rows.push([`${now}/${base}: RSS per idle connection`, `${(ma.rssPerConnection / 1024).toFixed(1)} / ${(mb.rssPerConnection / 1024).toFixed(1)} KB = ${(ma.rssPerConnection / mb.rssPerConnection).toFixed(2)}`, '']);
  return rows;
}

/** "median (min-max, n rounds)" of mine[i] / theirs[i] over the rounds both measured. */
function pairedRatios(mine: readonly number[], theirs: readonly number[]): string {
  const ratios = mine.flatMap((m, i) => (Number.isFinite(m / theirs[i]!) ? [m / theirs[i]!] : [])).sort((x, y) => x - y);
  if (ratios.length === 0) return 'n/a';
  const mid = ratios.length / 2;
  const median = ratios.length % 2 === 1 ? ratios[Math.floor(mid)]! : (ratios[mid - 1]! + ratios[mid]!) / 2;
  return `${median.toFixed(2)} (${ratios[0]!.toFixed(2)}-${ratios.at(-1)!.toFixed(2)}, ${ratios.length} rounds)`;
}

/**
 * Ratio of two sustained loads, honest about the top level: a server that sustained it may
 * sustain more, so its number is only a lower bound.
 */
function ratio(mine: number | null, theirs: number | null, top: number, target: number): [string, string] {
  const unshown = 'not shown (range too small)';
  if (mine === null) return ['capsync sustained no level', verdict(false)];
  if (theirs === null) return [`${mine}/s vs none`, 'yes (the other sustained no level)'];
  const value = mine / theirs;
  const text = `${mine} / ${theirs} = ${value.toFixed(2)}`;
  const mineCapped = mine === top;
  const theirsCapped = theirs === top;
  if (mineCapped && theirsCapped) return [`${text} (both sustained the top level: ratio unknown)`, unshown];
  if (mineCapped) return [`${text} (capsync at the top level: at least this)`, value >= target ? verdict(true) : unshown];
  if (theirsCapped) return [`${text} (the other at the top level: at most this)`, value < target ? verdict(false) : unshown];
  return [text, verdict(value >= target)];
}

function fanOutTable(levels: MeasuredLevel[], o: BenchOptions): string {
  const rows = [...levels]
    .sort((a, b) => a.offered - b.offered || o.servers.indexOf(a.server) - o.servers.indexOf(b.server))
    .map((l) => {
      const ok = l.p99Ms <= SUSTAINED_P99_MS && l.deliveredPct >= SUSTAINED_DELIVERED_PCT;
      return [
        String(l.offered),
        l.server,
        l.sentPerSec.toFixed(0),
        l.deliveredPerSec.toFixed(0),
        ms(l.p50Ms),
        ms(l.p99Ms),
        `${l.deliveredPct.toFixed(l.deliveredPct >= 99.95 ? 0 : 2)} %`,
        l.updatesPerFrame.toFixed(1),
        pct(l.serverCpuPct),
        pct(l.clientCpuPct),
        pct(l.otherCpuPct),
        ms(l.generatorLagP99Ms),
        (ok ? 'yes' : 'no') +
          (l.closedByServer > 0 ? ` (${l.closedByServer} closed)` : '') +
          (l.retried > 0 ? ` (rerun ${l.retried}x: other load)` : ''),
      ];
    });
  return table(
    ['Offered/s', 'Server', 'Sent/s', 'Delivered/s', 'p50 ms', 'p99 ms', 'Delivered', 'Updates/msg', 'Server CPU', 'Load-gen CPU', 'Other CPU', 'Load-gen lag p99 ms', 'Sustained'],
    rows,
  );
}

function memoryTable(memory: IdleMemoryResult[]): string {
  const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
  const rows = memory.map((m) => [
    m.server,
    String(m.connections),
    mib(m.before.rss),
    mib(m.after.rss),
    (m.rssPerConnection / 1024).toFixed(1),
    mib(m.before.heapUsed),
    mib(m.after.heapUsed),
    (m.heapPerConnection / 1024).toFixed(1),
  ]);
  return table(['Server', 'Connections', 'RSS before MiB', 'RSS after MiB', 'RSS KB/conn', 'Heap before MiB', 'Heap after MiB', 'Heap KB/conn'], rows);
}

function ms(v: number): string {
  if (Number.isNaN(v)) return '-';
  return v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function pct(v: number): string {
  return Number.isNaN(v) ? '-' : `${v.toFixed(0)} %`;
}

function verdict(ok: boolean): string {
  return ok ? 'yes' : '**no**';
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
