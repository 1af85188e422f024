/**
 * The convergence section of docs/benchmarks.md (also printed): how it was run, on what,
 * the targets with what was reached, and the tables.
 */
import type { Machine } from '../machine.js';
import type { ConvergenceOptions } from './options.js';
import type { PointRun, PointSpec } from './run-point.js';

/** Bytes after the heal at most this many times the minimal diff. */
export const BYTES_TARGET = 1.1;
/**
 * "Linear in the diff": the time per diff update at the largest size may be at most this
 * many times that at the next smaller size (a quadratic cost would multiply it by 10).
 */
export const LINEAR_TOLERANCE = 1.25;
/**
 * "Not in the history": the same diff on top of a history 100 times its size may take at
 * most this many times as long as without it (a cost linear in the history would multiply it
 * by up to ~100).
 */
export const HISTORY_TOLERANCE = 1.5;

export interface ConvergenceReport {
  options: ConvergenceOptions;
  points: PointSpec[];
  runs: PointRun[];
  commands: { a: string; b: string };
  machine: Machine;
  code: string;
  date: Date;
  runSeconds: number;
  window: number;
}

interface Summary {
  spec: PointSpec;
  runs: PointRun[];
  healToConverged: number;
  healToLinkUp: number;
  linkUpToConverged: number;
  payload: number;
  total: number;
  minimal: number;
  minimalWithSv: number;
  payloadToA: number;
  payloadToB: number;
  head: number;
}

export function renderReport(r: ConvergenceReport): string {
  const o = r.options;
  const m = r.machine;
  const summaries = r.points.map((p) => summarize(p, r.runs.filter((x) => x.spec === p))).filter((s) => s.runs.length > 0);
  const parts: string[] = [];
  parts.push('## Relay mesh: convergence after a partition');
  parts.push(
    [
      `Command: \`npm run bench:converge\`${o.standard ? '' : ` (non-standard flags: ${describeFlags(o)})`} (bench/convergence.ts; \`npm run bench\` runs it after the lock benchmark).`,
      `Run: ${r.date.toISOString().slice(0, 10)}, ${Math.round(r.runSeconds)} s, on ${r.code}.`,
      `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.os}, Node ${m.node}.`,
    ].join('  \n'),
  );
  parts.push(setup(r));
  parts.push('### Summary\n\n' + summary(summaries));
  parts.push('### Results\n\n' + resultsTable(summaries));
  parts.push('### Bytes by direction\n\n' + bytesTable(summaries));
  parts.push('### Where the time goes\n\n' + detailTable(summaries) + '\n\n' + notes(summaries));
  return parts.join('\n\n') + '\n';
}

function describeFlags(o: ConvergenceOptions): string {
  const flags = [`sizes ${o.sizes.map(count).join(', ')}`, o.history > 0 ? `history ${count(o.history)} + ${count(o.historyDiff)}` : 'no history variant', `${o.repeats} runs`];
  if (o.storage !== 'sqlite') flags.push(`${o.storage} storage`);
  return flags.join(', ');
}

function setup(r: ConvergenceReport): string {
  const o = r.options;
  return [
    `**Setup.** Two relays, each the real CLI (packages/server/src/cli.ts via tsx) in its own process on 127.0.0.1, ${o.storage === 'sqlite' ? 'default SQLite storage (an fsync per commit)' : 'memory storage'} in a fresh temp directory, default peer mode (on-demand: a relay links the documents it has loaded). A: \`${r.commands.a}\`; B: \`${r.commands.b}\`, its one peer being A *through the proxy*. A lists no peers: it answers B's link, one WebSocket per document for the pair, and both sides send their state vector on connect and answer the other's with the diff (y-websocket sync steps 1 and 2), then acknowledge. \`--idle-timeout-ms 1000\` only makes a finished run's document unload soon.`,
    '',
    "- *Proxy*: a TCP forwarder in a process of its own (the bench process's event loop must not delay the relays' bytes). Partition: every proxied connection is reset and new ones are accepted and reset at once; heal: bytes pass again. It counts each connection on its own, the HTTP upgrade heads apart from the payload after them (WebSocket frames, frame headers and masks included). Only the document's link is counted (by its request path); B's control link to A's mesh endpoint (`/.capsync/mesh`, 1 s heartbeats) is not.",
    `- *A run*: a fresh document; a bench client on each relay (the capsync protocol: hello, so the relay acknowledges durable updates) keeps it loaded, so B opens the document link; once it is up, the partition. ${o.history > 0 ? `History variant: ${count(o.history)} updates of a third client, made before the partition, are first written to both relays (as their merged state, one message: the same structs as one by one, without the minutes of writing), so both hold the shared history. ` : ''}Then each client writes its N updates, each one Yjs transaction inserting a short word into the shared Y.Text where a cursor is (it moves on a few characters per edit and jumps somewhere else every 20th), so every update is a separate struct and a separate stored update on the relay (until the relay compacts its log, every 500 updates); inserts only, since Yjs sends the whole delete set in every sync step 2. The updates go out as separate messages, at most ${count(r.window)} unacknowledged, until the relay acknowledged all (applied and committed).`,
    '- *Minimal diff*: from both relays\' states just before the heal (`GET /v1/docs/:name/update`): `encodeStateAsUpdate(A, svB).length + encodeStateAsUpdate(B, svA).length`; *with SVs* adds the two state vectors (the sync step 1s). Payload / minimal diff is the target\'s ratio.',
    "- *Converged*: both relays hold the union of the two state vectors. A relay broadcasts to its clients what it integrated from its peer right after applying it, so the time is when the broadcast that completes the union reaches the bench client (the later of the two relays); afterwards both states are fetched over HTTP and compared: equal state vectors and byte-identical encodings, every run (a run that differed would have failed). *Link up* is when the document link's `101` response passed the proxy. Heal → link up is the mesh reconnecting: B's control link retries with full-jitter backoff (100 ms doubling to 2 s), and only then opens the document links; link up → converged is the convergence work: state vectors exchanged, both diffs encoded, sent, validated, applied, committed and broadcast.",
    `- *Bytes* are counted from the heal until the link was quiet for 300 ms after convergence (the acknowledgements included). Each point ran ${o.repeats} time${o.repeats === 1 ? '' : 's'}, in rounds (every point once per round) after one warm-up run; medians, all runs in parentheses.${o.waitForQuiet ? ' Before each run the bench waited up to 3 s for other processes to use under 20 % of a core.' : ''}`,
  ].join('\n');
}

function summarize(spec: PointSpec, runs: PointRun[]): Summary {
  const med = (f: (x: PointRun) => number): number => median(runs.map(f));
  return {
    spec,
    runs,
    healToConverged: med((x) => x.healToConvergedMs),
    healToLinkUp: med((x) => x.healToLinkUpMs),
    linkUpToConverged: med((x) => x.linkUpToConvergedMs),
    payload: med((x) => x.bytes.payloadToA + x.bytes.payloadToB),
    total: med((x) => x.bytes.payloadToA + x.bytes.payloadToB + x.bytes.headToA + x.bytes.headToB),
    minimal: med((x) => x.minimal.aLacks + x.minimal.bLacks),
    minimalWithSv: med((x) => x.minimal.aLacks + x.minimal.bLacks + x.minimal.svA + x.minimal.svB),
    payloadToA: med((x) => x.bytes.payloadToA),
    payloadToB: med((x) => x.bytes.payloadToB),
    head: med((x) => x.bytes.headToA + x.bytes.headToB),
  };
}

function summary(s: Summary[]): string {
  const rows: string[][] = [];
  const ratios = s.map((x) => ({ x, payload: medianRatio(x.runs, (r) => payloadOf(r) / minimalOf(r)), total: medianRatio(x.runs, (r) => totalOf(r) / minimalOf(r)) }));
  rows.push([
    `Bytes exchanged after the heal <= ${BYTES_TARGET}× the minimal diff`,
    ratios.map((q) => `${label(q.x.spec)}: ${ratio(q.payload)} (with the upgrade: ${ratio(q.total)})`).join('<br>'),
    verdict(ratios.every((q) => q.payload <= BYTES_TARGET)),
  ]);

  const plain = s.filter((x) => x.spec.history === 0).sort((p, q) => p.spec.diff - q.spec.diff);
  if (plain.length >= 2) {
    const per = plain.map((x) => ({ x, us: perUpdateUs(x.linkUpToConverged, x.spec.diff) }));
    const last = per.at(-1)!;
    const before = per.at(-2)!;
    const growth = last.us / before.us;
    rows.push([
      `Convergence time linear in the diff (link up → converged; time per diff update at ${count(last.x.spec.diff)} <= ${LINEAR_TOLERANCE}× that at ${count(before.x.spec.diff)})`,
      per.map((q) => `${count(q.x.spec.diff)} per side: ${ms(q.x.linkUpToConverged)} ms = ${us(q.us)} µs per diff update`).join('<br>') + `<br>ratio ${ratio(growth)}`,
      verdict(growth <= LINEAR_TOLERANCE),
    ]);
  }
  const hist = s.find((x) => x.spec.history > 0);
  const same = hist ? plain.find((x) => x.spec.diff === hist.spec.diff) : undefined;
  if (hist && same) {
    const rWork = hist.linkUpToConverged / same.linkUpToConverged;
    const rAll = hist.healToConverged / same.healToConverged;
    rows.push([
      `… and not in the history: ${count(hist.spec.diff)} per side on top of ${count(hist.spec.history)} shared updates within ${HISTORY_TOLERANCE}× of without (link up → converged)`,
      `${ms(hist.linkUpToConverged)} vs ${ms(same.linkUpToConverged)} ms = ${ratio(rWork)} (heal → converged: ${ms(hist.healToConverged)} vs ${ms(same.healToConverged)} ms = ${ratio(rAll)})`,
      verdict(rWork <= HISTORY_TOLERANCE),
    ]);
  }
  const reconnect = s.flatMap((x) => x.runs.map((r) => r.healToLinkUpMs));
  rows.push([
    'Heal → document link up again (the mesh reconnect, not convergence work)',
    `median ${ms(median(reconnect))} ms, ${ms(Math.min(...reconnect))}–${ms(Math.max(...reconnect))} ms over all runs`,
    '',
  ]);
  return table(['Target', 'Measured', 'Met'], rows);
}

function resultsTable(s: Summary[]): string {
  const rows = s.map((x) => [
    label(x.spec),
    String(x.runs.length),
    withRuns(x.healToConverged, x.runs.map((r) => r.healToConvergedMs)),
    withRuns(x.healToLinkUp, x.runs.map((r) => r.healToLinkUpMs)),
    withRuns(x.linkUpToConverged, x.runs.map((r) => r.linkUpToConvergedMs)),
    us(perUpdateUs(x.linkUpToConverged, x.spec.diff)),
    bytes(x.minimal),
    bytes(x.minimalWithSv),
    bytes(x.payload),
    ratio(medianRatio(x.runs, (r) => payloadOf(r) / minimalOf(r))),
    ratio(medianRatio(x.runs, (r) => payloadOf(r) / (minimalOf(r) + r.minimal.svA + r.minimal.svB))),
    ratio(medianRatio(x.runs, (r) => totalOf(r) / minimalOf(r))),
  ]);
  return [
    'Times in ms. µs per diff update = link up → converged / (2 × updates per side): both sides\' updates cross. Bytes: payload after the heal (both directions); *total* adds the HTTP upgrade of the reconnected link.',
    '',
    table(
      [
        'Point',
        'Runs',
        'Heal → converged (runs)',
        'Heal → link up (runs)',
        'Link up → converged (runs)',
        'µs per diff update',
        'Minimal diff B',
        'Minimal + SVs B',
        'Payload B',
        'Payload / minimal diff',
        'Payload / minimal + SVs',
        'Total / minimal diff',
      ],
      rows,
    ),
  ].join('\n');
}

function bytesTable(s: Summary[]): string {
  const rows = s.map((x) => {
    const r0 = x.runs[0]!;
    return [
      label(x.spec),
      bytes(x.payloadToA),
      `${bytes(r0.minimal.aLacks)} + ${bytes(r0.minimal.svB)}`,
      ratio(medianRatio(x.runs, (r) => r.bytes.payloadToA / (r.minimal.aLacks + r.minimal.svB))),
      bytes(x.payloadToB),
      `${bytes(r0.minimal.bLacks)} + ${bytes(r0.minimal.svA)}`,
      ratio(medianRatio(x.runs, (r) => r.bytes.payloadToB / (r.minimal.bLacks + r.minimal.svA))),
      bytes(x.head),
      bytes(median(x.runs.map((r) => r.payloadAtConvergence))),
      String(Math.max(...x.runs.map((r) => r.linkConnections))),
    ];
  });
  return [
    "B→A carries B's sync step 1 (svB) and the diff A lacks (B's step 2), A→B the reverse; both also carry a hello and acknowledgements (each with a state vector) and WebSocket framing. Medians; the minimal parts are the same in every run (the same edits).",
    '',
    table(
      ['Point', 'B→A payload B', 'A lacks + svB B', 'B→A / minimal', 'A→B payload B', 'B lacks + svA B', 'A→B / minimal', 'Upgrade heads B', 'Payload at convergence B', 'Link connections after heal (max)'],
      rows,
    ),
  ].join('\n');
}

function detailTable(s: Summary[]): string {
  const rows = s.map((x) => {
    const relay = x.runs.map((r) => r.relayReportedMs).filter((v): v is number => v !== null);
    const broadcast = x.runs.filter((r) => r.detectedBy === 'broadcast').length;
    const identical = x.runs.filter((r) => r.bytesIdentical).length;
    return [
      label(x.spec),
      ms(median(x.runs.map((r) => r.convergedAtA))),
      ms(median(x.runs.map((r) => r.convergedAtB))),
      relay.length > 0 ? ms(median(relay)) : '-',
      `${ms(median(x.runs.map((r) => r.cpuMsA)))} / ${ms(median(x.runs.map((r) => r.cpuMsB)))}`,
      pct(median(x.runs.map((r) => r.otherCpuPct))),
      `${(median(x.runs.map((r) => r.writeMs)) / 1000).toFixed(1)} s (${count(Math.round(medianRatio(x.runs, (r) => (2 * r.spec.diff) / (r.writeMs / 1000))))}/s)`,
      bytes(median(x.runs.map((r) => r.stateBytes))),
      `${ms(median(x.runs.map((r) => r.yjs.encodeMs)))} / ${ms(median(x.runs.map((r) => r.yjs.validateMs)))} / ${ms(median(x.runs.map((r) => r.yjs.applyMs)))}`,
      `${count(x.runs[0]!.yjs.splits)} of ${count(x.runs[0]!.yjs.structs)}`,
      `${broadcast}/${x.runs.length}`,
      `${identical}/${x.runs.length}`,
    ];
  });
  return [
    "Medians. *A / B holds it*: ms after the heal at which each relay held the merged state. *B's own measure*: relay B's `capsync_peer_converge_seconds` for the link (from its WebSocket opening until B received A's step 2 and A acknowledged B's step 2 as committed), when exactly one link converged during the run. Relay CPU: user + system from the heal until the link was quiet (10 ms ticks). Other CPU: processes outside the benchmark, heal to convergence, percent of one core. Writing: both sides' divergent edits at once, until all were acknowledged (updates/s over both relays; the partition lasts at least this long). *Yjs here*: the relays' Yjs work redone in the bench process on the pre-heal states, both directions added up (the relays do theirs in parallel): encoding the two diffs, validating them as a relay does (@capsync/core's validateUpdateFor), applying them; *items split*: existing items the two applies had to split (an insert inside an item the receiver holds whole), of all the items the two relays held before.",
    '',
    table(
      ['Point', 'A holds it ms', 'B holds it ms', "B's own measure ms", 'Relay CPU A / B ms', 'Other CPU', 'Writing the edits', 'Merged state B', 'Yjs here: encode / validate / apply ms', 'Items split', 'Seen via broadcast', 'Encodings identical'],
      rows,
    ),
  ].join('\n');
}

function notes(s: Summary[]): string {
  const lines: string[] = [];
  const plain = s.filter((x) => x.spec.history === 0).sort((p, q) => p.spec.diff - q.spec.diff);
  if (plain.length >= 2) {
    const [before, last] = [plain.at(-2)!, plain.at(-1)!];
    const perStruct = (x: Summary, f: (r: PointRun) => number): number => (median(x.runs.map(f)) * 1000) / (2 * x.spec.diff);
    const applyRatio = perStruct(last, (r) => r.yjs.applyMs) / perStruct(before, (r) => r.yjs.applyMs);
    const validateRatio = perStruct(last, (r) => r.yjs.validateMs) / perStruct(before, (r) => r.yjs.validateMs);
    lines.push(
      `- *Diff size*: from ${count(before.spec.diff)} to ${count(last.spec.diff)} updates per side, the relays' time per diff update grew ${ratio(perUpdateUs(last.linkUpToConverged, last.spec.diff) / perUpdateUs(before.linkUpToConverged, before.spec.diff))}; ` +
        `Yjs alone, redone in the bench process: applying ${us(perStruct(before, (r) => r.yjs.applyMs))} → ${us(perStruct(last, (r) => r.yjs.applyMs))} µs per diff update (${ratio(applyRatio)}), ` +
        `validating (decoding) ${us(perStruct(before, (r) => r.yjs.validateMs))} → ${us(perStruct(last, (r) => r.yjs.validateMs))} µs (${ratio(validateRatio)}). ` +
        `No existing item is split in these points (the diffs only reference their own side's items), so where the relays' growth follows Yjs's, it is Yjs's per-struct cost rising with the size of the update and of the document (hundreds of thousands of items on the heap), not a step that scans the history.`,
    );
  }
  const hist = s.find((x) => x.spec.history > 0);
  const same = hist ? s.find((x) => x.spec.history === 0 && x.spec.diff === hist.spec.diff) : undefined;
  if (hist && same) {
    const applyWith = median(hist.runs.map((r) => r.yjs.applyMs));
    const applyWithout = median(same.runs.map((r) => r.yjs.applyMs));
    const encodeWith = median(hist.runs.map((r) => r.yjs.encodeMs));
    const encodeWithout = median(same.runs.map((r) => r.yjs.encodeMs));
    lines.push(
      `- *History*: with ${count(hist.spec.history)} shared updates, applying the two ${count(hist.spec.diff)}-update diffs took ${ms(applyWith)} ms in the bench process, against ${ms(applyWithout)} ms without history, and encoding them ${ms(encodeWith)} against ${ms(encodeWithout)} ms ` +
        `(validation: ${ms(median(hist.runs.map((r) => r.yjs.validateMs)))} against ${ms(median(same.runs.map((r) => r.yjs.validateMs)))} ms). ` +
        `The applies split ${count(hist.runs[0]!.yjs.splits)} items of the history (an edit inside a word that the receiving relay holds as one item), and Yjs (StructStore's getItemCleanStart/getItemCleanEnd) inserts every split-off piece into the array of all of that client's items with \`Array.splice\`, ` +
        `so each split moves on the order of the history's item count. Encoding a diff also walks every item once for the delete set. The bytes stay at the minimal diff either way; the time grows with the history through the receiver's Yjs.`,
    );
  }
  const polled = s.flatMap((x) => x.runs).filter((r) => r.detectedBy === 'poll');
  if (polled.length > 0) lines.push(`- ${polled.length} run(s) were detected only by the 2 s fallback polling of the relays' states (their times are coarse): ${polled.map((r) => r.docName).join(', ')}.`);
  const differing = s.flatMap((x) => x.runs).filter((r) => !r.bytesIdentical);
  if (differing.length > 0) lines.push(`- ${differing.length} run(s) ended with equal state vectors and equal text but encodings that differ byte for byte (Yjs split or merged items differently): ${differing.map((r) => r.docName).join(', ')}.`);
  return lines.join('\n');
}

// ---- helpers ----

function payloadOf(r: PointRun): number {
  return r.bytes.payloadToA + r.bytes.payloadToB;
}

function totalOf(r: PointRun): number {
  return payloadOf(r) + r.bytes.headToA + r.bytes.headToB;
}

function minimalOf(r: PointRun): number {
  return r.minimal.aLacks + r.minimal.bLacks;
}

function medianRatio(runs: PointRun[], f: (r: PointRun) => number): number {
  return median(runs.map(f));
}

function perUpdateUs(timeMs: number, perSide: number): number {
  return (timeMs * 1000) / (2 * perSide);
}

function label(p: PointSpec): string {
  return p.history > 0 ? `${count(p.diff)} per side on ${count(p.history)} shared` : `${count(p.diff)} per side`;
}

export function median(values: number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function withRuns(med: number, runs: number[]): string {
  return runs.length > 1 ? `${ms(med)} (${runs.map(ms).join(', ')})` : ms(med);
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

function bytes(n: number): string {
  return Number.isNaN(n) ? '-' : Math.round(n).toLocaleString('en-US');
}

function ms(v: number): string {
  if (Number.isNaN(v)) return '-';
  return v < 10 ? v.toFixed(2) : v < 1000 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US');
}

function us(v: number): string {
  return Number.isNaN(v) ? '-' : v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function ratio(v: number): string {
  return Number.isNaN(v) ? '-' : `${v.toFixed(3)}×`;
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
