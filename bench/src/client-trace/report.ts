/**
 * Turns the client-trace results into the Markdown section of docs/benchmarks.md (also
 * printed): how it was run, on what, the targets with what was reached, and the tables.
 */
import type { Machine } from '../machine.js';
import type { ChromiumRun } from './chromium.js';
import { QUIET_CPU_PCT, QUIET_WAIT_MS, type Results } from './measure.js';
import type { SequentialRun } from './node-sequential.js';
import type { ClientTraceOptions } from './options.js';
import { max, median, min } from './stats.js';
import { TARGETS } from './targets.js';

export interface Report {
  options: ClientTraceOptions;
  machine: Machine;
  code: string;
  date: Date;
  runSeconds: number;
  results: Results;
}

const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const ms = (n: number): string => (!Number.isFinite(n) ? '-' : n >= 100 ? n.toFixed(0) : n.toFixed(1));
const ratio = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '-');
const runs = (values: readonly number[]): string => values.map(ms).join(', ');
const yes = (ok: boolean): string => (ok ? 'yes' : '**no**');
/** "median (run, run, …)" of value / baseline, run by run. */
const ratios = (values: readonly number[], baseline: readonly number[]): { median: number; text: string } => {
  const list = values.map((v, i) => v / baseline[i]!);
  return { median: median(list), text: `${ratio(median(list))} (${list.map(ratio).join(', ')})` };
};

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

type Run = SequentialRun | ChromiumRun;

interface Environment {
  label: string;
  runs: Run[];
}

function environments(r: Results): Environment[] {
  const envs: Environment[] = [];
  if (r.nodeMemory.length > 0) envs.push({ label: 'Node, memory', runs: r.nodeMemory });
  if (r.nodeIndexedDb.length > 0) envs.push({ label: 'Node, IndexedDB (fake-indexeddb)', runs: r.nodeIndexedDb });
  if (r.chromium?.ok) envs.push({ label: 'Chromium, IndexedDB', runs: r.chromium.runs });
  return envs;
}

function isChromium(run: Run): run is ChromiumRun {
  return 'plain' in run;
}

export function renderReport(rep: Report): string {
  const { options: o, machine: m, results: r } = rep;
  const chromiumVersion = r.chromium?.ok ? `, Chromium ${r.chromium.version} (headless)` : '';
  const parts: string[] = [];
  parts.push('## Client: editing-trace replay');
  parts.push(
    [
      `Command: \`npm run bench:client\`${o.standard ? '' : ` (non-standard flags${o.quick ? ': --quick' : ''})`} (bench/client-trace.ts; \`npm run bench\` runs it after the relay benchmark).`,
      `Run: ${rep.date.toISOString().slice(0, 10)}, ${Math.round(rep.runSeconds)} s, on ${rep.code}.`,
      `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.os}, Node ${m.node}${chromiumVersion}.`,
    ].join('  \n'),
  );
  parts.push(setup(rep));
  parts.push('### Summary\n\n' + summary(rep) + interference(rep));
  const patches = r.trace.full ? `${int(r.trace.patches)} patches` : `its first ${int(r.trace.patches)} patches`;
  parts.push(`### Typing: ${r.trace.name}, ${patches}, one transaction per task\n\n` + typingTable(r));
  const envs = environments(r);
  if (envs.length > 0) {
    parts.push('### Through the relay to a second client\n\n' + endToEndTable(envs));
    parts.push('### Bytes on the wire\n\n' + wireTable(r, envs));
  }
  const stored = envs.filter((e) => e.runs.some((run) => isChromium(run) || run.local !== null));
  if (stored.length > 0) parts.push('### Local storage and cold open\n\n' + storageTable(stored));
  if (r.bursts.length > 0) parts.push('### Bursts: many patches in one task (Node, memory)\n\n' + burstTable(r));
  if (r.concurrent) parts.push(`### Concurrent trace: ${r.concurrent.trace.name}\n\n` + concurrentTable(r));
  if (r.chromium && !r.chromium.ok) parts.push(`**Chromium part skipped:** ${r.chromium.skipped}.`);
  return parts.join('\n\n') + '\n';
}

function setup(rep: Report): string {
  const { options: o, results: r } = rep;
  return [
    `**Setup.** The trace (${r.trace.full ? 'all of it' : `only its first ${int(r.trace.patches)} patches`}) is typed in`,
    `${o.overheadRuns} local round(s) and ${o.runs} end-to-end run(s) per environment; tables show medians and the runs.`,
    '*Typing*: each patch is one Y.Text transaction in its own task, as fast as the event loop allows (the next patch',
    'follows a `setImmediate`, in Chromium a `MessageChannel` message), like a user whose every keystroke is one event.',
    '*Busy* time sums, over the patches, the transaction plus the microtasks it queued (the client sends and announces',
    'at the end of a task); *wall* time is first to last patch, including what ran between the tasks: for plain Yjs and',
    "the offline client only the typing and the client's deferred work (local commits every 50 ms), for connected Node",
    'clients also the in-process relay and client B.',
    `Every connected run gets a fresh in-process relay (\`createRelay\`, storage ${o.relayStorage}, port 0) in the bench process,`,
    'so in Node client A, the relay and client B share one thread; Chromium runs A and B in two pages, each in its own',
    'browser context (own IndexedDB, own renderer process), against the relay in the Node process.',
    'Clients use the default settings with `crossTab: false`, except that writing clients with IndexedDB have threshold',
    'compaction off (`compactAfterRows`), so the stored log can be measured before `compactLocal()`.',
    '',
    '- *plain Yjs: edit* = the patches typed on a bare Y.Doc with an `update` listener that keeps each update (Yjs',
    '  encodes one V1 update per transaction). *edit + ship* = the same with every update applied to a second bare',
    '  Y.Doc at once. Chromium measures its own *plain Yjs: edit* in the writing page before each run.',
    "- *capsync, connected* = the same typing on a capsync client's doc (memory storage, link open, the relay not",
    "  waited for): Yjs plus the client's work per update (local storage queue, outbox, pending/status events, encoding",
    '  and `WebSocket.send`). *offline* = a client that never connects. The overhead target compares *connected* with',
    '  *plain Yjs: edit* (busy time), round by round.',
    '- *A durable on relay* = first patch until `flush({ durability: "relay" })` resolved; *B has final text* = first',
    "  patch until client B's text equalled the final text; *A saved locally* = until `flush({ durability: \"local\" })`.",
    '- Bytes: WebSocket payloads counted by a wrapper around the WebSocket class each client gets; *wire* adds the',
    '  WebSocket frame headers (no TCP/IP). Compared with `Y.encodeStateAsUpdate(final doc)`.',
    '- Storage: `handle.localSize()` before and after `handle.compactLocal()`, against `Y.encodeStateAsUpdateV2(doc)`.',
    `  Cold open: the writing client closed, then ${o.coldOpens} times a new client (\`connect: false\`) on the same IndexedDB`,
    '  times `client.open(name)` until it resolves with the document loaded (its text is checked); in Chromium each',
    '  cold open follows a page reload.',
    '- Bursts: the first N patches in one synchronous loop (one task: a script, a large paste of many edits), A to B.',
    '- Concurrent: one client per agent types its own transactions in trace order; each edit is made on a shadow doc',
    "  holding exactly the version the agent saw, and its update goes into the agent's client as a local change.",
    '  Before a transaction its client must have received the parents from the relay (the replay waits for them).',
  ].join('\n');
}

function summary(rep: Report): string {
  const r = rep.results;
  const rows: string[][] = [];
  if (r.connected.length > 0) {
    const base = r.plain.map((p) => p.edit.busyMs);
    const conn = ratios(
      r.connected.map((t) => t.busyMs),
      base,
    );
    const off = ratios(
      r.offline.map((t) => t.busyMs),
      base,
    );
    const offWall = ratios(
      r.offline.map((t) => t.wallMs),
      r.plain.map((p) => p.edit.wallMs),
    );
    let chromiumNote = '';
    if (r.chromium?.ok) {
      const c = r.chromium.runs;
      const busy = ratios(
        c.map((run) => run.replay.busyMs),
        c.map((run) => run.plain.busyMs),
      );
      chromiumNote = `<br>Chromium (IndexedDB), for reference: ${busy.text}`;
    }
    rows.push([
      `Client overhead: capsync typing (memory storage) <= ${TARGETS.overheadRatio}× plain Yjs doing the same edits and encoding updates (busy time)`,
      `Node, connected: ${conn.text}<br>Node, offline client: ${off.text}<br>` +
        `Node, offline client, wall time (its deferred local-storage work included): ${offWall.text}${chromiumNote}`,
      yes(conn.median <= TARGETS.overheadRatio),
    ]);
  }
  if (r.chromium?.ok) {
    const opens = r.chromium.runs.flatMap((run) => run.coldOpenMs);
    const med = median(opens);
    const doc = r.trace.full ? `the ${r.trace.name} document` : `${r.trace.name}'s first ${int(r.trace.patches)} patches (the target is for all of them)`;
    rows.push([
      `Cold open of ${doc} from IndexedDB in Chromium <= ${TARGETS.coldOpenMs} ms`,
      `${ms(med)} ms median of ${opens.length} (min ${ms(min(opens))}, max ${ms(max(opens))})`,
      r.trace.full ? yes(med <= TARGETS.coldOpenMs) : 'n/a',
    ]);
  } else if (r.chromium && !r.chromium.ok) {
    rows.push([`Cold open from IndexedDB in Chromium <= ${TARGETS.coldOpenMs} ms`, 'Chromium part skipped', 'n/a']);
  }
  const storedRatios: string[] = [];
  let storedOk = true;
  for (const env of environments(r)) {
    const values = env.runs.flatMap((run) => (isChromium(run) ? [run.after.bytes / run.finalV2Bytes] : run.local ? [run.local.after.bytes / run.finalV2Bytes] : []));
    if (values.length === 0) continue;
    const worst = max(values);
    storedOk &&= worst <= TARGETS.storedVsV2;
    storedRatios.push(`${env.label}: ${ratio(worst)} (worst of ${values.length})`);
  }
  if (storedRatios.length > 0) {
    rows.push([`Stored size after compaction <= ${TARGETS.storedVsV2}× Y.encodeStateAsUpdateV2`, storedRatios.join('<br>'), yes(storedOk)]);
  }
  if (r.concurrent) {
    const ok = r.concurrent.runs.filter((run) => run.converged).length;
    rows.push([
      `${r.concurrent.trace.name} typed by two clients: final text equals endContent`,
      `${ok} of ${r.concurrent.runs.length} runs; median ${ms(median(r.concurrent.runs.map((run) => run.totalMs)))} ms`,
      yes(ok === r.concurrent.runs.length),
    ]);
  }
  return table(['Target', 'Measured', 'Met'], rows);
}

function interference(rep: Report): string {
  const r = rep.results;
  // Quick runs are too short for the per-process CPU counters (10 ms ticks) to mean much.
  if (r.otherCpuPct.length === 0 || rep.options.quick) return '';
  const byPart = new Map<string, number[]>();
  for (const { part, pct } of r.otherCpuPct) byPart.set(part, [...(byPart.get(part) ?? []), pct]);
  const all = r.otherCpuPct.map((x) => x.pct);
  const pct = (v: number): string => `${v.toFixed(0)} %`;
  return (
    '\n\n' +
    `The machine is shared: other processes used a median of ${pct(median(all))} of one core during the measured runs ` +
    `(max ${pct(max(all))}; by part, median/max: ${[...byPart].map(([part, v]) => `${part} ${pct(median(v))}/${pct(max(v))}`).join(', ')}). ` +
    `Each run first waited up to ${QUIET_WAIT_MS / 1000} s for them to drop below ${QUIET_CPU_PCT} %. ` +
    'Ratios are taken run by run, so they suffer less from this than absolute times.'
  );
}

function typingTable(r: Results): string {
  const base = r.plain.map((p) => p.edit.busyMs);
  const perPatch = (v: number): string => (v * 1000) / r.trace.patches >= 10 ? ((v * 1000) / r.trace.patches).toFixed(1) : ((v * 1000) / r.trace.patches).toFixed(2);
  const rows: string[][] = [];
  const row = (label: string, busy: number[], wall: number[], baseline: number[]): void => {
    rows.push([label, ms(median(busy)), runs(busy), perPatch(median(busy)), ratios(busy, baseline).text, ms(median(wall))]);
  };
  row(
    'plain Yjs: edit (Node)',
    base,
    r.plain.map((p) => p.edit.wallMs),
    base,
  );
  row(
    'plain Yjs: edit + ship to a second doc (Node)',
    r.plain.map((p) => p.ship.busyMs),
    r.plain.map((p) => p.ship.wallMs),
    base,
  );
  row(
    'capsync, offline (Node, memory)',
    r.offline.map((t) => t.busyMs),
    r.offline.map((t) => t.wallMs),
    base,
  );
  row(
    'capsync, connected (Node, memory)',
    r.connected.map((t) => t.busyMs),
    r.connected.map((t) => t.wallMs),
    base,
  );
  if (r.chromium?.ok) {
    const c = r.chromium.runs;
    const chromiumBase = c.map((run) => run.plain.busyMs);
    row(
      'plain Yjs: edit (Chromium)',
      chromiumBase,
      c.map((run) => run.plain.wallMs),
      chromiumBase,
    );
    row(
      'capsync, connected (Chromium, IndexedDB)',
      c.map((run) => run.replay.busyMs),
      c.map((run) => run.replay.wallMs),
      chromiumBase,
    );
  }
  return [
    'Node rows are rounds (plain Yjs, then the offline client, then the connected client); ratios are taken within a',
    'round. Chromium: within a run, against plain Yjs typed in the same page just before.',
    '',
    table(['Typing', 'Busy ms, median', 'Busy ms, runs', 'µs per patch', 'Busy vs plain Yjs: edit, median (runs)', 'Wall ms, median'], rows),
  ].join('\n');
}

function localSaved(run: Run): number {
  return isChromium(run) ? run.localSavedMs : (run.local?.localSavedMs ?? Number.NaN);
}

function endToEndTable(envs: Environment[]): string {
  const rows = envs.map((env) => {
    const list = env.runs;
    return [
      env.label,
      ms(median(list.map((run) => run.replay.busyMs))),
      ms(median(list.map((run) => run.replay.wallMs))),
      `${ms(median(list.map((run) => run.flushMs)))} (${runs(list.map((run) => run.flushMs))})`,
      `${ms(median(list.map((run) => run.bSyncedMs)))} (${runs(list.map((run) => run.bSyncedMs))})`,
      ms(median(list.map(localSaved))),
      `${list.map((run) => run.wireA.sockets).join(', ')} / ${list.map((run) => run.wireB.sockets).join(', ')}`,
      `${list.map((run) => ms(run.wireA.longestSilenceMs)).join(', ')} / ${list.map((run) => ms(run.wireB.longestSilenceMs)).join(', ')}`,
    ];
  });
  const closes: string[] = [];
  for (const env of envs) {
    const count = new Map<string, number>();
    for (const run of env.runs) for (const c of [...run.wireA.closes.map((x) => `A: ${x}`), ...run.wireB.closes.map((x) => `B: ${x}`)]) count.set(c, (count.get(c) ?? 0) + 1);
    if (count.size > 0) closes.push(`${env.label}: ${[...count].map(([c, n]) => `${n} × ${c}`).join('; ')}`);
  }
  return [
    table(['Clients', 'A typing busy ms', 'A typing wall ms', 'A durable on relay ms (runs)', 'B has final text ms (runs)', 'A saved locally ms', 'Reconnects A / B (runs)', 'Longest silence from the relay ms, A / B (runs)'], rows),
    ...(closes.length > 0 ? ['', 'Sockets that closed during the runs (who closed, code, reason):', '', ...closes.map((c) => `- ${c}`)] : []),
  ].join('\n');
}

function wireTable(r: Results, envs: Environment[]): string {
  const plain = r.plain[0]!;
  const rows = envs.map((env) => {
    const pick = (f: (run: Run) => number): number => median(env.runs.map(f));
    const finalV1 = pick((run) => run.finalV1Bytes);
    return [
      env.label,
      int(pick((run) => run.wireA.sentFrames)),
      int(pick((run) => run.wireA.sentBytes)),
      int(pick((run) => run.wireA.sentWireBytes)),
      ratio(pick((run) => run.wireA.sentWireBytes) / finalV1),
      `${int(pick((run) => run.wireA.receivedFrames))} / ${int(pick((run) => run.wireA.receivedWireBytes))}`,
      int(pick((run) => run.wireB.receivedFrames)),
      int(pick((run) => run.wireB.receivedWireBytes)),
      ratio(pick((run) => run.wireB.receivedWireBytes) / finalV1),
    ];
  });
  return [
    `Final document: \`Y.encodeStateAsUpdate\` ${int(r.plainFinal.updateV1Bytes)} B, \`Y.encodeStateAsUpdateV2\` ${int(r.plainFinal.updateV2Bytes)} B;`,
    `plain Yjs emits ${int(plain.updates)} updates totalling ${int(plain.updateBytes)} B for the same edits.`,
    '',
    table(
      ['Clients', 'A sent frames', 'A sent payload B', 'A sent wire B', 'A sent / final update', 'A received frames / wire B', 'B received frames', 'B received wire B', 'B received / final update'],
      rows,
    ),
  ].join('\n');
}

function storageTable(envs: Environment[]): string {
  const rows = envs.map((env) => {
    const list = env.runs.map((run) =>
      isChromium(run)
        ? { before: run.before, after: run.after, compactMs: run.compactMs, coldOpenMs: run.coldOpenMs, v2: run.finalV2Bytes }
        : { ...run.local!, v2: run.finalV2Bytes },
    );
    const pick = (f: (x: (typeof list)[number]) => number): number => median(list.map(f));
    const opens = list.flatMap((x) => x.coldOpenMs);
    return [
      env.label,
      `${int(pick((x) => x.before.updates))} / ${int(pick((x) => x.before.bytes))}`,
      `${int(pick((x) => x.after.updates))} / ${int(pick((x) => x.after.bytes))}`,
      int(pick((x) => x.v2)),
      ratio(max(list.map((x) => x.after.bytes / x.v2))),
      ms(pick((x) => x.compactMs)),
      `${ms(median(opens))} (${ms(min(opens))}–${ms(max(opens))}, n=${opens.length})`,
    ];
  });
  return table(['Clients', 'Before compaction: rows / B', 'After: rows / B', 'V2 update B', 'After / V2 (worst)', 'compactLocal() ms', 'Cold open ms: median (min–max)'], rows);
}

function burstTable(r: Results): string {
  let previous: number | null = null;
  const rows = r.bursts.map((b) => {
    const flush = median(b.runs.map((run) => run.flushMs));
    const growth = previous === null ? '' : ` (${ratio(flush / previous)})`;
    previous = flush;
    const pick = (f: (run: (typeof b.runs)[number]) => number): number => median(b.runs.map(f));
    return [
      int(b.patches),
      ms(median(b.plainMs)),
      ms(pick((run) => run.replayMs)),
      `${ms(flush)}${growth}`,
      ms(pick((run) => run.bSyncedMs)),
      `${int(pick((run) => run.wireA.sentFrames))} / ${int(pick((run) => run.wireA.sentBytes))}`,
      `${int(pick((run) => run.wireB.receivedFrames))} / ${int(pick((run) => run.wireB.receivedBytes))}`,
    ];
  });
  return [
    'Medians of the runs; in brackets, how *A durable on relay* grew from the previous size.',
    '',
    table(['Patches', 'plain Yjs loop ms', 'capsync loop ms', 'A durable on relay ms', 'B has final text ms', 'A sent frames / payload B', 'B received frames / payload B'], rows),
  ].join('\n');
}

function concurrentTable(r: Results): string {
  const c = r.concurrent!;
  const list = c.runs;
  const rows = [
    [
      `${int(c.trace.txns)} txns, ${c.trace.agents} agents, ${int(c.trace.finalLength)} chars`,
      `${list.filter((run) => run.converged).length} / ${list.length}`,
      `${ms(median(list.map((run) => run.totalMs)))} (${runs(list.map((run) => run.totalMs))})`,
      int(median(list.map((run) => run.waits))),
      ms(median(list.map((run) => run.waitMs))),
      list[0]!.wire.map((w) => `${int(w.sentFrames)} / ${int(w.sentWireBytes)}`).join('; '),
    ],
  ];
  return [
    'Total = first transaction until both clients flushed to the relay and were synced with it. Clients use memory storage.',
    'Agent k types with Yjs clientID k + 1: where both agents insert at one place (next to a character one of them',
    "deleted), Yjs orders by clientID, and the trace's endContent has the lower agent first.",
    '',
    table(['Trace', 'Converged to endContent', 'Total ms (runs)', 'Waits for the network', 'Waiting ms', 'Sent frames / wire B per client (run 1)'], rows),
  ].join('\n');
}
