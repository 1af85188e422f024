/**
 * One offered-load level of the cluster benchmark against a running system with its clients
 * connected: sends paced open-loop (../pacer.ts) for warm-up + window + tail, then waits for
 * every delivery, and tells apart deliveries to clients of the other instance (cross-instance:
 * through PostgreSQL or Redis) and of the sender's own. Only updates sent in the window count
 * for latency and delivered %; every update of the level counts for lost and duplicate
 * deliveries, and for the store's cost per update.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { nowMicros } from '../load-client.js';
import { pace } from '../pacer.js';
import { LatencySamples } from '../stats.js';
import { scanMarkers } from '../wire.js';
import type { ClusterClient, ClusterSink } from './client.js';
import { cpuBetween, sampleProcs, type ProcSample } from './cpu.js';
import type { DbCounters, RelayCounters, RunningSystem } from './systems.js';

export interface LevelConfig {
  rate: number;
  warmupMs: number;
  measureMs: number;
  tailMs: number;
  /** Longest wait for all deliveries after sending stopped. */
  drainMs: number;
  /** When deliveries are still missing after the drain: how much longer to wait, to tell late from lost. */
  lateMs: number;
}

export interface LevelResult {
  offered: number;
  sentPerSec: number;
  /** Updates sent in the whole level (warm-up, window, tail). */
  sentTotal: number;
  cross: { p50Ms: number; p99Ms: number; maxMs: number; deliveredPct: number; perSec: number };
  local: { p50Ms: number; p99Ms: number; deliveredPct: number } | null;
  /** Deliveries of the level's updates not there after the drain, and still not after `lateMs` more. */
  missingAfterDrain: number;
  missingAtEnd: number;
  expectedDeliveries: number;
  duplicates: number;
  /** Deliveries of earlier levels' updates that came during this level. */
  stale: number;
  closedByServer: number;
  /** Close codes of the connections the server closed, with counts. */
  closeCodes: [number, number][];
  /** The state of `storedDocs` on every instance after the level (capsync: GET /v1/docs/:name/update). */
  stored: StoredCheck | null;
  serverCpuPct: number;
  storeCpuPct: number;
  generatorCpuPct: number;
  otherCpuPct: number;
  generatorLagP99Ms: number;
  db: { statementsPerUpdate: number; walBytesPerUpdate: number; statementWalBytesPerUpdate: number; xactPerUpdate: number; rowsPerUpdate: number; byKind: [string, number][];
    /** Mean execution ms per call, by kind (pg_stat_statements; the commit's WAL flush is not in it). */
    meanMsByKind: [string, number][];
  } | null;
  relay: { catchUpReads: number; noteLagMeanMs: number; notes: number; persistMeanMs: number; storageRetries: number } | null;
}

/** Which updates each receiver got: per sender, a flag per seq (1-based). */
class Seen {
  private readonly bySender = new Map<number, Uint8Array>();

  /** Marks `seq` of `sender`; false when it was already there (a duplicate). */
  add(sender: number, seq: number): boolean {
    let flags = this.bySender.get(sender);
    if (!flags || flags.length <= seq) {
      const grown = new Uint8Array(Math.max(1024, (seq + 1) * 2));
      if (flags) grown.set(flags);
      flags = grown;
      this.bySender.set(sender, flags);
    }
    if (flags[seq]) return false;
    flags[seq] = 1;
    return true;
  }

  /** Seqs first..last of `sender` not received. */
  missing(sender: number, first: number, last: number): number {
    const flags = this.bySender.get(sender);
    let n = 0;
    for (let s = first; s <= last; s++) if (!flags || !flags[s]) n++;
    return n;
  }
}

class Recorder implements ClusterSink {
  readonly cross = new LatencySamples();
  readonly local = new LatencySamples();
  windowStart = Number.POSITIVE_INFINITY;
  windowEnd = Number.POSITIVE_INFINITY;
  crossInWindow = 0;
  localInWindow = 0;
  unique = 0;
  expected = 0;
  duplicates = 0;
  closedByServer = 0;
  readonly seen = new Map<ClusterClient, Seen>();
  private onComplete: (() => void) | null = null;

  /** Updates of earlier levels that arrived during this one (late, not counted). */
  stale = 0;

  constructor(
    private readonly byId: Map<number, ClusterClient>,
    /** Per client: the seq of its first update in this level. */
    private readonly firstSeq: Map<number, number>,
  ) {}

  delivered(receiver: ClusterClient, sender: number, seq: number, sendMicros: number, now: number): void {
    if (seq < (this.firstSeq.get(sender) ?? 0)) {
      this.stale++;
      return;
    }
    let seen = this.seen.get(receiver);
    if (!seen) this.seen.set(receiver, (seen = new Seen()));
    if (!seen.add(sender, seq)) {
      this.duplicates++;
      return;
    }
    const from = this.byId.get(sender);
    if (!from || from.doc !== receiver.doc) return; // not a client of this level
    this.unique++;
    if (sendMicros >= this.windowStart && sendMicros < this.windowEnd) {
      if (from.instance !== receiver.instance) {
        this.cross.add(now - sendMicros);
        this.crossInWindow++;
      } else {
        this.local.add(now - sendMicros);
        this.localInWindow++;
      }
    }
    if (this.unique >= this.expected) this.onComplete?.();
  }

  /** Clients whose connection the server closed during the level, and the close codes. */
  readonly closedClients = new Set<number>();
  readonly closeCodes = new Map<number, number>();

  closed(receiver: ClusterClient, code: number): void {
    this.closedByServer++;
    this.closedClients.add(receiver.id);
    this.closeCodes.set(code, (this.closeCodes.get(code) ?? 0) + 1);
  }

  whenAllDelivered(timeoutMs: number): Promise<void> {
    if (this.unique >= this.expected) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.onComplete = null;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.onComplete = done;
    });
  }
}

interface Sample {
  server: number | null;
  generator: number;
  procs: ProcSample | null;
  wall: number;
  db: DbCounters | null;
  relay: RelayCounters | null;
}

/**
 * Runs one level. `clients` are every client of the level (all connected); `sender(n)` is the
 * client that makes the n-th send.
 */
export async function runLevel(
  system: RunningSystem,
  clients: ClusterClient[],
  sender: (n: number) => ClusterClient,
  cfg: LevelConfig,
  /** Documents whose state is fetched from every instance after the level (capsync only). */
  storedDocs: string[] = [],
): Promise<LevelResult> {
  const byId = new Map(clients.map((c) => [c.id, c]));
  const byDoc = new Map<string, ClusterClient[]>();
  for (const c of clients) byDoc.set(c.doc, [...(byDoc.get(c.doc) ?? []), c]);
  const firstSeq = new Map(clients.map((c) => [c.id, c.sent + 1]));
  const recorder = new Recorder(byId, firstSeq);
  for (const c of clients) c.reportTo(recorder);

  const sample = async (): Promise<Sample> => {
    const generator = process.cpuUsage();
    const procs = sampleProcs();
    const wall = nowMicros();
    const cpus = await Promise.all(system.servers.map((s) => s.cpu().catch(() => null)));
    const server = cpus.some((c) => c === null) ? null : cpus.reduce((sum, c) => sum + c!.cpuMicros, 0);
    return { server, generator: generator.user + generator.system, procs, wall, db: null, relay: null };
  };
  const counters = async (): Promise<Pick<Sample, 'db' | 'relay'>> => ({
    db: await system.dbCounters(),
    relay: await system.relayCounters(),
  });

  try {
    const before = await counters();
    const start = nowMicros();
    recorder.windowStart = start + cfg.warmupMs * 1000;
    recorder.windowEnd = recorder.windowStart + cfg.measureMs * 1000;
    const lag = monitorEventLoopDelay({ resolution: 1 });
    const at = (ms: number, then: () => void): Promise<Sample> =>
      new Promise((resolve) =>
        setTimeout(() => {
          then();
          resolve(sample());
        }, ms),
      );
    const windowOpen = at(cfg.warmupMs, () => lag.enable());
    const windowClose = at(cfg.warmupMs + cfg.measureMs, () => lag.disable());

    let sentInWindow = 0;
    let sentTotal = 0;
    await pace(cfg.rate, cfg.warmupMs + cfg.measureMs + cfg.tailMs, (n) => {
      const from = sender(n);
      const sentAt = from.send();
      if (sentAt < 0) return;
      sentTotal++;
      recorder.expected += byDoc.get(from.doc)!.length - 1;
      if (sentAt >= recorder.windowStart && sentAt < recorder.windowEnd) sentInWindow++;
    });
    await recorder.whenAllDelivered(cfg.drainMs);
    // Deliveries missing between clients that stayed connected (a closed connection's are not
    // owed: updates it sent may never have been read, and nothing is sent to it after the close).
    const missing = (): number => {
      let n = 0;
      for (const receiver of clients) {
        if (recorder.closedClients.has(receiver.id)) continue;
        const seen = recorder.seen.get(receiver);
        for (const other of byDoc.get(receiver.doc)!) {
          if (other === receiver || recorder.closedClients.has(other.id)) continue;
          const first = firstSeq.get(other.id)!;
          if (other.sent < first) continue;
          n += seen ? seen.missing(other.id, first, other.sent) : other.sent - first + 1;
        }
      }
      return n;
    };
    const missingAfterDrain = recorder.unique >= recorder.expected ? 0 : missing();
    if (missingAfterDrain > 0) await recorder.whenAllDelivered(cfg.lateMs);
    const missingAtEnd = missingAfterDrain > 0 ? missing() : 0;
    const stored = await checkStoredState(system, clients, byDoc, firstSeq, recorder.closedClients, storedDocs);
    // pg_stat_database is flushed by backends at most once a second.
    if (before.db) await new Promise((resolve) => setTimeout(resolve, 1_100));
    const after = await counters();

    const [s0, s1] = await Promise.all([windowOpen, windowClose]);
    const wall = s1.wall - s0.wall;
    const pct = (micros: number | null): number => (micros === null ? Number.NaN : (100 * micros) / wall);
    const split = cpuBetween(s0.procs, s1.procs, process.pid, system.storePid);
    const storeMicros = system.storePid === null ? null : split.store;
    const otherMicros = split.others;
    const seconds = cfg.measureMs / 1000;
    // Senders are spread evenly over the clients that send; the expected counts use the mean.
    const senders = new Set<ClusterClient>();
    for (let n = 0; n < Math.min(clients.length * 4, 100_000); n++) senders.add(sender(n));
    let crossPerSend = 0;
    let localPerSend = 0;
    for (const s of senders) {
      const group = byDoc.get(s.doc)!;
      crossPerSend += group.filter((o) => o.instance !== s.instance).length;
      localPerSend += group.filter((o) => o !== s && o.instance === s.instance).length;
    }
    crossPerSend /= senders.size;
    localPerSend /= senders.size;
    const updates = Math.max(1, sentTotal);
    const db =
      before.db && after.db
        ? {
            statementsPerUpdate: (after.db.statements - before.db.statements) / updates,
            walBytesPerUpdate: (after.db.walBytes - before.db.walBytes) / updates,
            statementWalBytesPerUpdate: (after.db.statementWalBytes - before.db.statementWalBytes) / updates,
            xactPerUpdate: (after.db.xactCommit - before.db.xactCommit) / updates,
            rowsPerUpdate: (after.db.tupInserted - before.db.tupInserted) / updates,
            byKind: [...after.db.byKind]
              .map(([k, v]): [string, number] => [k, (v - (before.db!.byKind.get(k) ?? 0)) / updates])
              .filter(([, v]) => v > 0)
              .sort((a, b) => b[1] - a[1]),
            meanMsByKind: [...after.db.execMsByKind]
              .map(([k, ms]): [string, number] => {
                const calls = after.db!.byKind.get(k)! - (before.db!.byKind.get(k) ?? 0);
                return [k, calls > 0 ? (ms - (before.db!.execMsByKind.get(k) ?? 0)) / calls : 0];
              })
              .filter(([, v]) => v > 0),
          }
        : null;
    const relay =
      before.relay && after.relay
        ? {
            catchUpReads: after.relay.catchUpReads - before.relay.catchUpReads,
            notes: after.relay.noteLagCount - before.relay.noteLagCount,
            noteLagMeanMs: (1000 * (after.relay.noteLagSum - before.relay.noteLagSum)) / Math.max(1, after.relay.noteLagCount - before.relay.noteLagCount),
            persistMeanMs: (1000 * (after.relay.persistSum - before.relay.persistSum)) / Math.max(1, after.relay.persistCount - before.relay.persistCount),
            storageRetries: after.relay.storageRetries - before.relay.storageRetries,
          }
        : null;
    return {
      offered: cfg.rate,
      sentPerSec: sentInWindow / seconds,
      sentTotal,
      cross: {
        p50Ms: recorder.cross.percentileMs(50),
        p99Ms: recorder.cross.percentileMs(99),
        maxMs: recorder.cross.percentileMs(100),
        deliveredPct: sentInWindow === 0 ? 0 : (100 * recorder.crossInWindow) / (sentInWindow * crossPerSend),
        perSec: recorder.crossInWindow / Math.max(1, crossPerSend) / seconds,
      },
      local:
        localPerSend > 0
          ? {
              p50Ms: recorder.local.percentileMs(50),
              p99Ms: recorder.local.percentileMs(99),
              deliveredPct: sentInWindow === 0 ? 0 : (100 * recorder.localInWindow) / (sentInWindow * localPerSend),
            }
          : null,
      missingAfterDrain,
      missingAtEnd,
      expectedDeliveries: recorder.expected,
      duplicates: recorder.duplicates,
      stale: recorder.stale,
      closedByServer: recorder.closedByServer,
      closeCodes: [...recorder.closeCodes],
      stored,
      serverCpuPct: pct(s0.server !== null && s1.server !== null ? s1.server - s0.server : null),
      storeCpuPct: pct(storeMicros),
      generatorCpuPct: pct(s1.generator - s0.generator),
      otherCpuPct: pct(otherMicros),
      generatorLagP99Ms: lag.percentile(99) / 1e6,
      db,
      relay,
    };
  } finally {
    for (const c of clients) c.reportTo(null);
  }
}

/** What the instances hold of the level's updates (capsync relays, over their HTTP API). */
export interface StoredCheck {
  docs: number;
  /** Updates sent by clients that stayed connected, in the checked documents. */
  sent: number;
  /** Of those, missing from the state of at least one instance. */
  missingSomewhere: number;
  /** Of those, missing from every instance. */
  missingEverywhere: number;
  /** Updates (any sender) held by one instance and not by another. */
  divergent: number;
  /** Documents an instance would not serve (busy: 503), left out. */
  unreadable: number;
}

async function checkStoredState(
  system: RunningSystem,
  clients: ClusterClient[],
  byDoc: Map<string, ClusterClient[]>,
  firstSeq: Map<number, number>,
  closed: Set<number>,
  docs: string[],
): Promise<StoredCheck | null> {
  if (docs.length === 0 || system.name === 'hocuspocus-redis') return null;
  const check: StoredCheck = { docs: 0, sent: 0, missingSomewhere: 0, missingEverywhere: 0, divergent: 0, unreadable: 0 };
  for (const doc of docs) {
    const states: Set<string>[] = [];
    for (const server of system.servers) {
      const res = await fetch(`http://127.0.0.1:${server.port}/v1/docs/${encodeURIComponent(doc)}/update`, { signal: AbortSignal.timeout(30_000) }).catch(() => null);
      if (!res?.ok) break;
      const held = new Set<string>();
      scanMarkers(new Uint8Array(await res.arrayBuffer()), 0, (client, seq) => held.add(`${client}:${seq}`));
      states.push(held);
    }
    if (states.length < system.servers.length) {
      check.unreadable++;
      continue;
    }
    check.docs++;
    const all = new Set(states.flatMap((st) => [...st]));
    for (const key of all) if (states.some((st) => !st.has(key))) check.divergent++;
    for (const c of byDoc.get(doc) ?? []) {
      if (closed.has(c.id)) continue;
      for (let seq = firstSeq.get(c.id)!; seq <= c.sent; seq++) {
        check.sent++;
        const key = `${c.id}:${seq}`;
        const holders = states.filter((st) => st.has(key)).length;
        if (holders < states.length) check.missingSomewhere++;
        if (holders === 0) check.missingEverywhere++;
      }
    }
  }
  return check;
}
