/**
 * The systems the cluster benchmark compares, each started once per workload and stopped after:
 *
 *   capsync-postgres: two capsync relays on one PostgreSQL database (cluster mode)
 *   hocuspocus-redis: two Hocuspocus 4 instances on one Redis (@hocuspocus/extension-redis)
 *   capsync-sqlite:   one capsync relay on SQLite (fsync per commit), the single-relay baseline
 *
 * Clients of "instance" 0 and 1 connect to the two instances; with the single relay both
 * groups connect to it (its "cross-instance" deliveries are plain fan-out).
 */
import type pg from 'pg';
import { ServerProcess, type ServerKind } from '../server-process.js';
import { hocuspocus, yWebsocket, type Dialect } from './dialects.js';
import type { BenchPostgres } from './postgres.js';
import type { BenchRedis } from './redis.js';

export const SYSTEMS = ['capsync-postgres', 'hocuspocus-redis', 'capsync-sqlite'] as const;
export type SystemName = (typeof SYSTEMS)[number];

export const SYSTEM_LABELS: Record<SystemName, string> = {
  'capsync-postgres': 'capsync, 2 relays on one PostgreSQL (cluster mode)',
  'hocuspocus-redis': 'Hocuspocus 4 + Redis, 2 instances',
  'capsync-sqlite': 'capsync, 1 relay on SQLite',
};

/** PostgreSQL's own counters, read by the bench over its own connection. */
export interface DbCounters {
  /** pg_current_wal_lsn() as bytes. */
  walBytes: number;
  /** pg_stat_statements: calls and WAL bytes of the relays' statements (the bench's own left out). */
  statements: number;
  statementWalBytes: number;
  /** Calls and total execution ms by statement kind (first words of the query). */
  byKind: Map<string, number>;
  execMsByKind: Map<string, number>;
  /** pg_stat_database (flushed by backends up to ~1 s late, or later while they are idle). */
  xactCommit: number;
  tupInserted: number;
}

/** Counters of the capsync relays' /metrics, summed over the instances. */
export interface RelayCounters {
  catchUpReads: number;
  noteLagSum: number;
  noteLagCount: number;
  persistSum: number;
  persistCount: number;
  storageRetries: number;
}

export interface RunningSystem {
  readonly name: SystemName;
  readonly dialect: Dialect;
  /** The server process that clients of `instance` (0 or 1) connect to. */
  serverFor(instance: number): ServerProcess;
  readonly servers: ServerProcess[];
  /** The root process of the shared store (PostgreSQL's postmaster, Redis), null without one. */
  readonly storePid: number | null;
  dbCounters(): Promise<DbCounters | null>;
  relayCounters(): Promise<RelayCounters | null>;
  stop(): Promise<void>;
}

export interface Stores {
  postgres: BenchPostgres;
  redis: BenchRedis;
}

let databases = 0;

export async function startSystem(name: SystemName, stores: Stores, nodeArgs: string[]): Promise<RunningSystem> {
  const start = (kind: ServerKind, args: string[]): Promise<ServerProcess> => ServerProcess.start(kind, nodeArgs, args);
  switch (name) {
    case 'capsync-postgres': {
      const url = await stores.postgres.createDatabase(`capsync_bench_${process.pid}_${++databases}`);
      // One after the other: the first creates the schema.
      const a = await start('capsync-postgres', [url]);
      const b = await start('capsync-postgres', [url]).catch(async (err: unknown) => {
        await a.stop();
        throw err;
      });
      const stats = await stores.postgres.connect(url);
      return system(name, yWebsocket, [a, b], stores.postgres.pid, () => readDbCounters(stats), async () => {
        await stats.end().catch(() => {});
      });
    }
    case 'hocuspocus-redis': {
      const a = await start('hocuspocus-redis', [String(stores.redis.port)]);
      const b = await start('hocuspocus-redis', [String(stores.redis.port)]).catch(async (err: unknown) => {
        await a.stop();
        throw err;
      });
      return system(name, hocuspocus, [a, b], stores.redis.pid, async () => null, async () => {});
    }
    case 'capsync-sqlite': {
      const a = await start('capsync-sqlite', []);
      return system(name, yWebsocket, [a], null, async () => null, async () => {});
    }
  }
}

function system(
  name: SystemName,
  dialect: Dialect,
  servers: ServerProcess[],
  storePid: number | null,
  dbCounters: () => Promise<DbCounters | null>,
  cleanup: () => Promise<void>,
): RunningSystem {
  const capsync = name !== 'hocuspocus-redis';
  return {
    name,
    dialect,
    servers,
    serverFor: (instance) => servers[instance % servers.length]!,
    storePid,
    dbCounters,
    // A relay too busy to answer in time: its counters are unknown for the level.
    relayCounters: () => (capsync ? readRelayCounters(servers).catch(() => null) : Promise.resolve(null)),
    async stop() {
      await cleanup();
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

async function readDbCounters(client: pg.Client): Promise<DbCounters> {
  const wal = await client.query<{ b: string }>(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS b`);
  const statements = await client.query<{ query: string; calls: string; wal_bytes: string; ms: number }>(
    `SELECT query, calls::text, wal_bytes::text, total_exec_time AS ms FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_current_wal_lsn%' AND query NOT LIKE '%pg_stat_database%'`,
  );
  const db = await client.query<{ xact_commit: string; tup_inserted: string }>(
    `SELECT xact_commit::text, tup_inserted::text FROM pg_stat_database WHERE datname = current_database()`,
  );
  const byKind = new Map<string, number>();
  const execMsByKind = new Map<string, number>();
  let calls = 0;
  let walBytes = 0;
  for (const row of statements.rows) {
    const kind = statementKind(row.query);
    byKind.set(kind, (byKind.get(kind) ?? 0) + Number(row.calls));
    execMsByKind.set(kind, (execMsByKind.get(kind) ?? 0) + Number(row.ms));
    calls += Number(row.calls);
    walBytes += Number(row.wal_bytes);
  }
  return {
    walBytes: Number(wal.rows[0]!.b),
    statements: calls,
    statementWalBytes: walBytes,
    byKind,
    execMsByKind,
    xactCommit: Number(db.rows[0]!.xact_commit),
    tupInserted: Number(db.rows[0]!.tup_inserted),
  };
}

/** A short name for a statement: what it does, by its text. */
function statementKind(query: string): string {
  const q = query.replace(/\s+/g, ' ').trim();
  if (q.startsWith('WITH batch')) return 'append (INSERT ... NOTIFY)';
  if (/^(LISTEN|UNLISTEN)/i.test(q)) return 'LISTEN/UNLISTEN';
  if (q.includes('capsync_doc_snapshots') && q.includes('through >')) return 'catch-up read';
  if (q.includes('capsync_doc_snapshots') && q.startsWith('SELECT 0 AS kind')) return 'load';
  if (q.startsWith('WITH snap AS') || q.startsWith('INSERT INTO capsync_docs AS d (doc, head, log_count, log_bytes) VALUES')) return 'compaction';
  if (q.startsWith('WITH claimed AS')) return 'client id claim';
  if (/^(BEGIN|COMMIT|ROLLBACK)/i.test(q)) return q.split(' ')[0]!.toUpperCase();
  return q.slice(0, 40);
}

async function readRelayCounters(servers: ServerProcess[]): Promise<RelayCounters> {
  const total: RelayCounters = { catchUpReads: 0, noteLagSum: 0, noteLagCount: 0, persistSum: 0, persistCount: 0, storageRetries: 0 };
  for (const server of servers) {
    const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    const value = (metric: string): number => {
      let sum = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith(metric + ' ') || line.startsWith(metric + '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
      }
      return sum;
    };
    total.catchUpReads += value('capsync_cluster_catch_up_reads_total');
    total.noteLagSum += value('capsync_cluster_notification_lag_seconds_sum');
    total.noteLagCount += value('capsync_cluster_notification_lag_seconds_count');
    total.persistSum += value('capsync_persist_seconds_sum');
    total.persistCount += value('capsync_persist_seconds_count');
    total.storageRetries += value('capsync_storage_retries_total');
  }
  return total;
}
