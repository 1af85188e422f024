/**
 * Turns the lock benchmark's measurements into the Markdown section of docs/benchmarks.md
 * (also printed): how it was run, on what, the targets with what was reached, the tables.
 */
import type { Machine } from '../machine.js';
import type { FsyncProbe } from './fsync-probe.js';
import type { LockBenchOptions } from './options.js';
import { SYSTEM_LABELS, type SystemId } from './systems.js';
import { bucketPercentileMs, workloadLabel, type Measured, type WorkloadId } from './workloads.js';

/** Each round first waits up to QUIET_WAIT_MS for other processes to use less than this share of one core. */
export const QUIET_CPU_PCT = 20;
export const QUIET_WAIT_MS = 5_000;

export const TARGETS = {
  /** The embedded backend: p99 of an acquire + release pair on loopback, sequential workloads. */
  embeddedP99Ms: 2,
  /** The etcd backend against raw etcd3 doing the same round trips: latency and 1/throughput. */
  etcdOverRaw: 1.2,
};

/** p99.9 is shown only with at least this many samples (10 beyond it). */
const P999_MIN_SAMPLES = 10_000;

export interface Report {
  options: LockBenchOptions;
  /** The command-line flags, for a non-standard run. */
  argv: string[];
  systems: SystemId[];
  machine: Machine;
  code: string;
  date: Date;
  runSeconds: number;
  etcdVersion: string | null;
  etcd3Version: string;
  fsync: FsyncProbe | null;
  relayCommands: Partial<Record<SystemId, string>>;
  measured: Map<SystemId, Map<WorkloadId, Measured>>;
  notes: string[];
}

const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const ms = (n: number): string => (!Number.isFinite(n) ? '-' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
const us = (n: number): string => (Number.isFinite(n) ? `${Math.round(n).toLocaleString('en-US')}` : '-');
const pct = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(0)} %` : '-');
const ratio = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '-');
const yes = (ok: boolean): string => (ok ? 'yes' : '**no**');

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export interface Derived {
  p50: number;
  p99: number;
  p999: number;
  mean: number;
  throughput: number;
  minRound: number;
  maxRound: number;
  otherPct: number;
  stealPct: number;
}

export function derive(m: Measured): Derived {
  return {
    p50: m.pair.percentileMs(50),
    p99: m.pair.percentileMs(99),
    p999: m.pair.size >= P999_MIN_SAMPLES ? m.pair.percentileMs(99.9) : Number.NaN,
    mean: m.pairs > 0 ? m.pairSumUs / m.pairs / 1000 : Number.NaN,
    throughput: (m.pairs * 1000) / m.wallMs,
    minRound: Math.min(...m.roundThroughput),
    maxRound: Math.max(...m.roundThroughput),
    otherPct: (100 * m.cpu.othersUs) / (m.wallMs * 1000),
    stealPct: (100 * m.cpu.stealUs) / (m.wallMs * 1000),
  };
}

export function renderReport(rep: Report): string {
  const { options: o, machine: mc, measured } = rep;
  const shape = { keys: o.keys, concurrency: o.concurrency };
  const get = (s: SystemId, w: WorkloadId): Measured | undefined => measured.get(s)?.get(w);
  const has = (s: SystemId): boolean => rep.systems.includes(s);
  const parts: string[] = [];

  parts.push('## Locks: acquire + release latency');
  parts.push(
    [
      `Command: \`npm run bench:locks${o.standard ? '' : ' -- ' + rep.argv.join(' ')}\` (bench/lock-latency.ts; \`npm run bench\` runs it after the client benchmark).  `,
      `Run: ${rep.date.toISOString().slice(0, 10)}, ${rep.runSeconds.toFixed(0)} s, on ${rep.code}.  `,
      `Machine: ${mc.cpu}, ${mc.cores} cores, ${mc.memoryGiB.toFixed(1)} GiB RAM, ${mc.os}, Node ${mc.node}` +
        (rep.etcdVersion ? `, etcd ${rep.etcdVersion}` : '') +
        (rep.fsync ? `; a 4 KiB write + fdatasync in ${rep.fsync.dir} takes ${ms(rep.fsync.p50Ms)} ms (p50), ${ms(rep.fsync.p99Ms)} ms (p99)` : '') +
        '.',
    ].join('\n'),
  );

  const setup: string[] = [];
  setup.push(
    `**Setup.** Everything on 127.0.0.1, in one run. A *pair* is \`acquire\` of a free key with a ${o.ttlMs / 1000} s TTL, then, as soon ` +
      'as it resolved, the release of that lease; its latency runs from the acquire call until the release resolved (bench clock). ' +
      `Workloads: *1 key* (one loop, the same key every time), *${int(o.keys)} keys* (one loop, round-robin over them), ` +
      `*concurrent* (${o.concurrency} loops at once over the ${int(o.keys)} keys; each loop has keys of its own, so nothing ` +
      'contends: this measures the lock path, not waiting). Throughput = pairs / wall time.',
  );
  const relays: string[] = [];
  if (has('embedded') || has('etcd')) {
    relays.push(
      '- *capsync*: the relay is the real CLI (packages/server/src/cli.ts via tsx) in its own process, default SQLite storage ' +
        '(`synchronous=FULL`: an fsync per commit) in a fresh temp directory; one capsync client in the bench process ' +
        "(`createClient({ url, storage: 'memory', WebSocket: ws })`) calls `client.locks.acquire(key, { ttlMs })` and " +
        '`lease.release()` over its one lock WebSocket. ' +
        [rep.relayCommands.embedded && `Embedded: \`${rep.relayCommands.embedded}\` (each grant and release is committed to SQLite before it is answered).`, rep.relayCommands.etcd && `etcd backend: \`${rep.relayCommands.etcd}\`.`]
          .filter(Boolean)
          .join(' '),
    );
  }
  if (rep.etcdVersion) {
    relays.push(
      '- *etcd*: 3 members on loopback started like the integration tests (test/support/etcd-cluster.ts: heartbeat 50 ms, ' +
        'election timeout 500 ms, otherwise etcd defaults, so every raft write is fsynced by a majority). All clients get all ' +
        'three endpoints; etcd3 picks a member per call, so two calls in three go to a follower, which forwards to the leader.',
    );
    relays.push(
      `- *raw etcd3, same round trips* (the peer of the etcd backend): etcd3 ${rep.etcd3Version} with default options in the bench process, ` +
        'making exactly the calls packages/server/src/locks/etcd-backend.ts (through etcd-fault-handling.ts) makes for one uncontended acquire + release: ' +
        'acquire = `LeaseGrant(TTL)`, then `Txn(if create_revision(lock key) = 0: put lock key on the lease, put the ' +
        '"last token" key; else: range lock key)` (the token is the txn revision); release = `LeaseRevoke` (deletes the key ' +
        'with its lease). 3 sequential round trips, 3 raft writes. The ratio etcd backend / this isolates what capsync adds: ' +
        "client, WebSocket hop, relay, the backend's bookkeeping and its per-call deadlines.",
    );
    relays.push(
      '- *raw etcd3, textbook lock*: `LeaseGrant`, `Txn(put-if-absent on the lease)`, release = `DeleteRange` + `LeaseRevoke`: ' +
        "4 round trips. The etcd backend needs one fewer (the revoke deletes the key), so it can beat this one.",
    );
  }
  setup.push(relays.join('\n'));
  setup.push(
    `Before measuring, every system ran ${int(o.warmupPairs)} pairs of each workload. The ${int(o.pairs)} measured pairs per ` +
      `system and workload are split into ${o.rounds} rounds; in each round every workload is run by every system in turn ` +
      '(the order of the systems rotates), so a noisy stretch of the shared machine hits all of them and ratios compare ' +
      `neighbouring runs.${o.waitForQuiet ? ` Each round first waits up to ${QUIET_WAIT_MS / 1000} s for other processes to use less than ${QUIET_CPU_PCT} % of a core.` : ''} ` +
      `p99.9 is shown with at least ${int(P999_MIN_SAMPLES)} samples.`,
  );
  parts.push(setup.join('\n\n'));

  // ---- summary ----
  const rows: string[][] = [];
  const seq = o.workloads.filter((w) => w !== 'concurrent');
  if (has('embedded') && seq.length > 0) {
    const p99s = seq.map((w) => derive(get('embedded', w)!).p99);
    const conc = o.workloads.includes('concurrent') ? derive(get('embedded', 'concurrent')!) : null;
    rows.push([
      `Embedded backend: p99 of a pair <= ${TARGETS.embeddedP99Ms} ms on loopback (sequential workloads)`,
      seq.map((w, i) => `${workloadLabel(w, shape)}: ${ms(p99s[i]!)} ms`).join('<br>') +
        (conc ? `<br>(${workloadLabel('concurrent', shape)}, for reference: ${ms(conc.p99)} ms)` : ''),
      yes(p99s.every((p) => p <= TARGETS.embeddedP99Ms)),
    ]);
  }
  if (has('etcd') && has('raw-etcd')) {
    for (const w of o.workloads) {
      const e = derive(get('etcd', w)!);
      const r = derive(get('raw-etcd', w)!);
      const rs = [e.p50 / r.p50, e.p99 / r.p99, r.throughput / e.throughput];
      rows.push([
        `etcd backend within ${TARGETS.etcdOverRaw}× raw etcd3 (same round trips), ${workloadLabel(w, shape)}`,
        `p50 ${ms(e.p50)} / ${ms(r.p50)} ms = ${ratio(rs[0]!)}; p99 ${ms(e.p99)} / ${ms(r.p99)} ms = ${ratio(rs[1]!)}; ` +
          `throughput ${int(r.throughput)} / ${int(e.throughput)} pairs/s = ${ratio(rs[2]!)}`,
        yes(rs.every((x) => x <= TARGETS.etcdOverRaw)),
      ]);
    }
  }
  if (rows.length > 0) parts.push('### Summary\n\n' + table(['Target', 'Measured', 'Met'], rows));

  const all = rep.systems.flatMap((s) => o.workloads.map((w) => derive(get(s, w)!)));
  const noise = all.map((d) => d.otherPct).filter(Number.isFinite).sort((a, b) => a - b);
  if (noise.length > 0) {
    const steal = all.map((d) => d.stealPct).filter(Number.isFinite).sort((a, b) => a - b);
    parts.push(
      `The machine is shared: processes outside the benchmark used a median of ${pct(noise[noise.length >> 1]!)} of one core ` +
        `while the pairs ran (min ${pct(noise[0]!)}, max ${pct(noise.at(-1)!)} over the system × workload rows; per row below; ` +
        `machine busy time from /proc/stat minus the benchmark's own processes)` +
        (steal.length > 0 ? `, and the hypervisor took a median of ${pct(steal[steal.length >> 1]!)} (max ${pct(steal.at(-1)!)}) of a core away as steal time` : '') +
        `. With ${mc.cores} cores shared by the bench process (client), the relay, the etcd members and that load, ` +
        'tail latencies (p99, p99.9) move with the noise from run to run, more than medians do; the per-round throughput ' +
        'spread shows by how much.',
    );
  }
  if (rep.notes.length > 0) parts.push(rep.notes.map((n) => `Note: ${n}.`).join('\n'));

  // ---- results ----
  const resultRows: string[][] = [];
  for (const w of o.workloads) {
    for (const s of rep.systems) {
      const m = get(s, w)!;
      const d = derive(m);
      resultRows.push([
        workloadLabel(w, shape),
        SYSTEM_LABELS[s],
        int(m.pairs),
        ms(d.p50),
        ms(d.p99),
        ms(d.p999),
        ms(d.mean),
        int(d.throughput),
        `${int(d.minRound)}–${int(d.maxRound)}`,
        `${pct(d.otherPct)}${d.stealPct >= 0.5 ? ` (+${pct(d.stealPct)} steal)` : ''}`,
      ]);
    }
  }
  parts.push(
    '### Results\n\n' +
      table(['Workload', 'System', 'Pairs', 'p50 ms', 'p99 ms', 'p99.9 ms', 'Mean ms', 'Pairs/s', 'Pairs/s per round (min–max)', 'Other CPU'], resultRows),
  );

  // ---- ratios ----
  if (has('etcd') && (has('raw-etcd') || has('raw-etcd-textbook'))) {
    const ratioRows: string[][] = [];
    for (const w of o.workloads) {
      const e = derive(get('etcd', w)!);
      for (const peer of ['raw-etcd', 'raw-etcd-textbook'] as const) {
        if (!has(peer)) continue;
        const r = derive(get(peer, w)!);
        ratioRows.push([workloadLabel(w, shape), SYSTEM_LABELS[peer], ratio(e.p50 / r.p50), ratio(e.p99 / r.p99), ratio(e.mean / r.mean), ratio(r.throughput / e.throughput)]);
      }
    }
    const split = has('raw-etcd')
      ? o.workloads.map((w) => {
          const e = get('etcd', w)!;
          const r = get('raw-etcd', w)!;
          const rel = e.relaySide;
          const extra = (e.pairSumUs / e.pairs - r.pairSumUs / r.pairs) / 1000;
          const relay = rel && rel.acquire.count > 0 && rel.release.count > 0 ? (rel.acquire.sumS / rel.acquire.count + rel.release.sumS / rel.release.count) * 1000 : Number.NaN;
          const outside = (e.acquireSumUs + e.releaseSumUs) / e.pairs / 1000 - relay;
          const inside = relay - (r.acquireSumUs + r.releaseSumUs) / r.pairs / 1000;
          return `${workloadLabel(w, shape)}: ${ms(extra)} ms = ${ms(outside)} outside the relay + ${ms(inside)} inside it`;
        })
      : [];
    parts.push(
      '### etcd backend / raw etcd3\n\nLatency ratios are etcd backend / raw; the throughput ratio is raw / etcd backend, so above 1 ' +
        'always means the backend is slower.\n\n' +
        table(['Workload', 'Peer', 'p50', 'p99', 'Mean', 'Throughput'], ratioRows) +
        (split.length > 0
          ? '\n\nWhat the etcd backend adds per pair (means, against raw etcd3 with the same round trips): ' +
            split.join('; ') +
            '. *Outside the relay* is the capsync client, the WebSocket hop both ways and the relay\'s event loop before and ' +
            'after the request is handled; *inside* is the relay\'s answer time minus raw etcd3\'s own acquire and release: the ' +
            'lock service, the backend\'s bookkeeping and per-call deadlines, and the same etcd calls made from the relay ' +
            'process rather than the bench process (details in the next table).'
          : ''),
    );
  }

  // ---- breakdown ----
  const breakdownRows: string[][] = [];
  for (const w of o.workloads) {
    for (const s of rep.systems) {
      const m = get(s, w)!;
      const rel = m.relaySide;
      const relAcq = rel && rel.acquire.count > 0 ? (rel.acquire.sumS * 1000) / rel.acquire.count : Number.NaN;
      const relRel = rel && rel.release.count > 0 ? (rel.release.sumS * 1000) / rel.release.count : Number.NaN;
      const relP99 = (op: 'acquire' | 'release'): string => (rel ? `≤ ${ms(bucketPercentileMs(rel[op], 99))}` : '-');
      const acq = m.acquireSumUs / m.pairs / 1000;
      const relc = m.releaseSumUs / m.pairs / 1000;
      const outside = acq + relc - relAcq - relRel;
      breakdownRows.push([
        workloadLabel(w, shape),
        SYSTEM_LABELS[s],
        ms(acq),
        ms(relc),
        ms(relAcq),
        ms(relRel),
        relP99('acquire'),
        relP99('release'),
        ms(outside),
        us(m.cpu.benchUs / m.pairs),
        us(m.cpu.relayUs / m.pairs),
        us(m.cpu.etcdUs / m.pairs),
      ]);
    }
  }
  parts.push(
    '### Where the time goes\n\n' +
      'Means per pair. *Client* times are what the caller sees (acquire, release); *relay* times are the relay\'s own ' +
      '`capsync_lock_op_seconds` histogram (request decoded until the reply is handed to the socket: validation, the backend, ' +
      'SQLite commit or etcd round trips; its p99 only as the upper bound of the histogram bucket that holds it); *outside the relay* = client − relay: the client library, the WebSocket hop both ' +
      'ways, and waiting for a core. For raw etcd3, acquire = LeaseGrant + Txn and release = LeaseRevoke (or DeleteRange + ' +
      'LeaseRevoke). CPU is user + system time per pair of the bench process (clients, raw etcd3), the relay, and the three ' +
      'etcd members together, from /proc in 10 ms ticks (the etcd members also spend CPU on heartbeats while other systems ' +
      'run).\n\n' +
      table(
        ['Workload', 'System', 'Client acquire ms', 'Client release ms', 'Relay acquire ms', 'Relay release ms', 'Relay acquire p99 ms', 'Relay release p99 ms', 'Outside the relay ms', 'Bench CPU µs', 'Relay CPU µs', 'etcd CPU µs'],
        breakdownRows,
      ),
  );
  return parts.join('\n\n') + '\n';
}
