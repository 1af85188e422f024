/**
 * The chaos topologies: three relays (real `capsync-server` processes, restartable on the same
 * port), every link through its own fault proxy.
 *
 * 'mesh' (default): relays with SQLite in temp directories, peered with each other:
 * - relay X's outgoing peer link to relay Y goes to proxy X→Y (X is started with
 *   `--peer <url of proxy X→Y>`), so the two directions of a relay pair are two proxies;
 * - each client's link to a relay goes to its own proxy (one per client and relay it may use).
 *
 * 'postgres': a cluster in cluster mode, relays started with `--postgres` on one database of one
 * PostgreSQL server and no peers (a change committed by one reaches the others through
 * LISTEN/NOTIFY):
 * - relay X's link to the database goes to proxy X→db (X is started with `--postgres <URL of
 *   proxy X→db>` and a short `--postgres-timeout-ms`, so a held link is noticed fast);
 * - client links as in the mesh;
 * - the database server itself can be stopped, SIGKILLed or frozen, and started again.
 * Locks are not part of it: the relays of a cluster do not share a lock authority yet (each
 * relay's embedded one is its own, in its `locks.db`), and run.ts records no lock history for
 * either topology (the lock linearizability nemesis is test/locks/lock-nemesis.test.ts, on one
 * relay); a cluster lock history needs the PostgreSQL lock backend first.
 *
 * The relays and the link proxies live as long as the cluster, across seeds; client proxies
 * too (a client name keeps its proxies). Faults on links are reference-counted, so
 * overlapping episodes of a schedule combine (the most severe mode wins; the largest delay).
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { FaultProxy, type DelaySpec, type FaultMode } from '../support/fault-proxy.js';
import { startPostgres, type PostgresCluster } from '../support/postgres-cluster.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { SeededRandom } from '../support/seeded-random.js';
import { waitForEvent } from '../support/wait.js';
import {
  allLinks,
  clientLink,
  dbLink,
  linksOfClient,
  peerLink,
  type CutMode,
  type DatabaseOutage,
  type LinkId,
  type ScheduleOptions,
  type Topology,
  type TopologyKind,
} from './schedule.js';

export type PeerMode = 'on-demand' | 'replicate-all';

export interface ClusterOptions {
  /** 'mesh' (default) or 'postgres' (see the header). */
  topology?: TopologyKind;
  /** The PostgreSQL server of the 'postgres' topology; default: one started for the cluster (and closed with it). */
  postgres?: PostgresCluster;
  /** `--postgres-timeout-ms` of the relays of the 'postgres' topology. Default 1500. */
  postgresTimeoutMs?: number;
  peerMode?: PeerMode;
  /** Clients get a list of relay URLs, their own relay first (needs createClient({ url: string[] })). */
  failover?: boolean;
  /** Extra relay CLI flags. */
  relayArgs?: string[];
  /**
   * False: a control run (the checks must fail): mesh relays without --peer; 'postgres' relays
   * each on a database of its own. Default true.
   */
  peering?: boolean;
  log?: (line: string) => void;
}

export const RELAY_NAMES = ['A', 'B', 'C'];

/** 6 workload clients, 2 per relay, and the two trace agents on A and B. */
export const TOPOLOGY: Topology = {
  kind: 'mesh',
  relays: RELAY_NAMES,
  clients: [
    { name: 'c0', relay: 0 },
    { name: 'c1', relay: 0 },
    { name: 'c2', relay: 1 },
    { name: 'c3', relay: 1 },
    { name: 'c4', relay: 2 },
    { name: 'c5', relay: 2 },
    { name: 't0', relay: 0 },
    { name: 't1', relay: 1 },
  ],
};

/** The same relays and clients on one PostgreSQL database. */
export const POSTGRES_TOPOLOGY: Topology = { ...TOPOLOGY, kind: 'postgres' };

/**
 * How long a relay (re)start may take to be ready: it compiles the server with tsx, CPU-bound,
 * and a loaded 2-core machine took more than spawnRelay's default 20 s for a restart.
 */
const RELAY_READY_TIMEOUT_MS = 60_000;

/** The relays' shared relay credential (open relays trust only it as a peer). */
const CHAOS_MESH_TOKEN = 'chaos-mesh-token';

const SEVERITY: Record<CutMode, number> = { 'one-way-up': 1, 'one-way-down': 1, hold: 2, drop: 3, reset: 4 };

export class ChaosCluster {
  readonly topology: Topology;
  readonly relays: RestartableRelay[] = [];
  /** The PostgreSQL server of the 'postgres' topology. */
  postgres: PostgresCluster | null = null;
  private ownsPostgres = false;
  /** 'up', or how the nemesis took it away. */
  private databaseState: 'up' | 'down' | 'paused' = 'up';
  private databaseStarting: Promise<void> | null = null;
  /** Per relay: how many times its database went away (link cut or server down), to tell a start that failed for it. */
  private readonly databaseOutages: number[] = [];
  /** 'database': the database or a relay's link to it changed. */
  private readonly events = new EventEmitter();
  readonly proxies = new Map<LinkId, FaultProxy>();
  readonly scheduleOptions: ScheduleOptions;
  private readonly cuts = new Map<LinkId, Map<number, CutMode>>();
  private readonly delays = new Map<LinkId, Map<number, DelaySpec>>();
  /** Restarts in flight (a kill waits for the previous restart of its relay). */
  private readonly starting = new Map<number, Promise<void>>();
  private jitter = new SeededRandom(1);
  private disposed = false;

  private constructor(readonly options: ClusterOptions) {
    this.scheduleOptions = { clientLinksTo: options.failover ? 'all' : 'own' };
    this.topology = options.topology === 'postgres' ? POSTGRES_TOPOLOGY : TOPOLOGY;
    this.events.setMaxListeners(0);
  }

  get kind(): TopologyKind {
    return this.topology.kind ?? 'mesh';
  }

  get peerMode(): PeerMode {
    return this.options.peerMode ?? 'on-demand';
  }

  static async start(options: ClusterOptions = {}): Promise<ChaosCluster> {
    const cluster = new ChaosCluster(options);
    try {
      await cluster.boot();
    } catch (err) {
      await cluster.dispose();
      throw err;
    }
    return cluster;
  }

  private async boot(): Promise<void> {
    if (this.kind === 'postgres') await this.bootPostgres();
    else await this.bootMesh();
    const random = () => this.jitter.next();
    for (const c of this.topology.clients) {
      for (const link of linksOfClient(this.topology, c.name, this.scheduleOptions)) {
        const relay = Number(link.split(':')[2]);
        this.proxies.set(link, await FaultProxy.start(this.portOf(relay), { random, name: linkName(link) }));
      }
    }
  }

  private async bootPostgres(): Promise<void> {
    const random = () => this.jitter.next();
    if (this.options.postgres) {
      this.postgres = this.options.postgres;
    } else {
      this.postgres = await startPostgres();
      this.ownsPostgres = true;
    }
    const pg = this.postgres;
    const shared = await pg.createDatabase();
    for (let r = 0; r < RELAY_NAMES.length; r++) {
      this.databaseOutages.push(0);
      const link = dbLink(r);
      const proxy = await FaultProxy.start(pg.port, { random, name: linkName(link) });
      this.proxies.set(link, proxy);
      // The control run: a database of its own per relay, so nothing committed by one reaches another.
      const url = this.options.peering === false ? await pg.createDatabase() : shared;
      const viaProxy = url.replace(`:${pg.port}/`, `:${proxy.port}/`);
      // One after the other: each start compiles the server with tsx, which is CPU-bound.
      const relay = await RestartableRelay.start([
        '--relay-id',
        RELAY_NAMES[r]!,
        '--postgres',
        viaProxy,
        '--postgres-timeout-ms',
        String(this.options.postgresTimeoutMs ?? 1_500),
        // Compactions every 100 updates (default 500): several per seed in both documents, racing
        // the other relays' appends and catch-up reads under the faults.
        '--compact-updates',
        '100',
        ...(this.options.relayArgs ?? []),
      ], { readyTimeoutMs: RELAY_READY_TIMEOUT_MS });
      this.relays.push(relay);
    }
  }

  private async bootMesh(): Promise<void> {
    const n = RELAY_NAMES.length;
    const random = () => this.jitter.next();
    // Peer proxies first: the relays' --peer flags name them. They reset connections until their relay is up.
    for (let a = 0; a < n; a++) {
      for (let b = 0; b < n; b++) {
        if (a === b) continue;
        const link = peerLink(a, b);
        this.proxies.set(link, await FaultProxy.start(0, { mode: 'reset', random, name: linkName(link) }));
      }
    }
    const peerArgs = (r: number) =>
      this.options.peering === false ? [] : RELAY_NAMES.flatMap((_, o) => (o === r ? [] : ['--peer', this.proxies.get(peerLink(r, o))!.url]));
    // Started one after the other: each start compiles the server with tsx, which is CPU-bound.
    for (let r = 0; r < n; r++) {
      const relay = await RestartableRelay.start(['--relay-id', RELAY_NAMES[r]!, '--peer-token', CHAOS_MESH_TOKEN, ...peerArgs(r), '--peer-mode', this.peerMode, ...(this.options.relayArgs ?? [])], {
        readyTimeoutMs: RELAY_READY_TIMEOUT_MS,
      });
      this.relays.push(relay);
    }
    for (let a = 0; a < n; a++) {
      for (let b = 0; b < n; b++) {
        if (a === b) continue;
        const proxy = this.proxies.get(peerLink(a, b))!;
        proxy.setTarget(this.portOf(b));
        proxy.setMode('pass');
      }
    }
  }

  portOf(relay: number): number {
    return Number(new URL(this.relays[relay]!.httpUrl).port);
  }

  /** Reseeds the proxies' jitter (per run). */
  reseed(seed: number): void {
    this.jitter = new SeededRandom((seed ^ 0x0de1a7) >>> 0);
  }

  /** What a client is given as `url`: its proxy to its relay, or (failover) its proxies to every relay, its own first. */
  clientUrl(client: string): string | string[] {
    const urls = linksOfClient(this.topology, client, this.scheduleOptions).map((l) => this.proxies.get(l)!.url);
    return this.options.failover ? urls : urls[0]!;
  }

  /** The relay a client is attached to. */
  relayOf(client: string): number {
    return this.topology.clients.find((c) => c.name === client)!.relay;
  }

  cut(fault: number, link: LinkId, mode: CutMode): void {
    let m = this.cuts.get(link);
    if (!m) this.cuts.set(link, (m = new Map()));
    m.set(fault, mode);
    if (link.startsWith('db:')) this.databaseOutages[Number(link.slice(3))]!++;
    this.applyLink(link);
  }

  delay(fault: number, link: LinkId, spec: DelaySpec): void {
    let m = this.delays.get(link);
    if (!m) this.delays.set(link, (m = new Map()));
    m.set(fault, spec);
    this.applyLink(link);
  }

  /** Ends one fault's cuts and delays. */
  clearFault(fault: number): void {
    for (const [link, m] of this.cuts) if (m.delete(fault)) this.applyLink(link);
    for (const [link, m] of this.delays) if (m.delete(fault)) this.applyLink(link);
    this.events.emit('database');
  }

  /** Every link back to 'pass' without delay. */
  healLinks(): void {
    this.cuts.clear();
    this.delays.clear();
    for (const p of this.proxies.values()) p.heal();
    this.events.emit('database');
  }

  /** The database goes away: stopped (`pg_ctl stop -m fast`), SIGKILLed, or frozen (SIGSTOP). */
  async stopDatabase(how: DatabaseOutage): Promise<void> {
    const pg = this.postgres;
    if (!pg) throw new Error('no database in a mesh');
    await this.databaseStarting?.catch(() => {});
    if (this.databaseState !== 'up') return;
    this.databaseState = how === 'pause' ? 'paused' : 'down';
    for (let r = 0; r < this.databaseOutages.length; r++) this.databaseOutages[r]!++;
    this.events.emit('database');
    if (how === 'pause') pg.pause();
    else if (how === 'kill') await pg.kill();
    else await pg.stop();
  }

  /** The database back (started, crash recovery included, or resumed); concurrent calls share the start. No-op in a mesh. */
  startDatabase(): Promise<void> {
    const pg = this.postgres;
    if (!pg || this.databaseState === 'up') return Promise.resolve();
    if (this.databaseStarting) return this.databaseStarting;
    if (this.databaseState === 'paused') {
      pg.resume();
      this.databaseState = 'up';
      this.events.emit('database');
      return Promise.resolve();
    }
    const p = pg.start().then(() => {
      this.databaseState = 'up';
      this.events.emit('database');
    });
    this.databaseStarting = p.finally(() => (this.databaseStarting = null));
    return this.databaseStarting;
  }

  /** Relay `relay` can reach the database: it is up and the relay's link to it is not cut. */
  private databaseReachable(relay: number): boolean {
    return this.databaseState === 'up' && !this.isCut(dbLink(relay));
  }

  /** True when some fault cuts `link` now. */
  isCut(link: LinkId): boolean {
    return (this.cuts.get(link)?.size ?? 0) > 0;
  }

  /** A client's writes are made while it cannot reach any relay it uses. */
  isolated(client: string): boolean {
    return linksOfClient(this.topology, client, this.scheduleOptions).every((l) => this.isCut(l) || !this.relays[Number(l.split(':')[2])]!.running);
  }

  private applyLink(link: LinkId): void {
    const proxy = this.proxies.get(link);
    if (!proxy) return;
    const cuts = [...(this.cuts.get(link)?.values() ?? [])];
    let mode: FaultMode = 'pass';
    if (cuts.length > 0) {
      const worst = cuts.reduce((a, b) => (SEVERITY[b] > SEVERITY[a] ? b : a));
      // Both one-way directions at once is no way at all.
      mode = SEVERITY[worst] === 1 && cuts.includes('one-way-up') && cuts.includes('one-way-down') ? 'hold' : worst;
    }
    if (proxy.mode !== mode) proxy.setMode(mode);
    const delays = [...(this.delays.get(link)?.values() ?? [])];
    proxy.setDelay(delays.length === 0 ? null : { ms: Math.max(...delays.map((d) => d.ms)), jitterMs: Math.max(...delays.map((d) => d.jitterMs)) });
  }

  /** SIGKILL (waits for a restart still in flight first). */
  async kill(relay: number): Promise<void> {
    await this.starting.get(relay);
    await this.relays[relay]!.stop('SIGKILL');
  }

  /**
   * Starts a stopped relay again on its port with its data; concurrent calls share the start.
   * A relay on PostgreSQL cannot start without its database (it exits: the schema is checked at
   * startup), so in that topology the start waits until the relay can reach the database, and is
   * tried again when it failed because the database went away meanwhile (only then).
   */
  restart(relay: number): Promise<void> {
    const inFlight = this.starting.get(relay);
    if (inFlight) return inFlight;
    const r = this.relays[relay]!;
    if (r.running || this.disposed) return Promise.resolve();
    const start = async () => {
      if (this.kind !== 'postgres') return r.start();
      for (;;) {
        await waitForEvent(this.events, 'database', () => this.disposed || this.databaseReachable(relay), `relay ${RELAY_NAMES[relay]} to reach the database`, 120_000);
        if (this.disposed) return;
        const outages = this.databaseOutages[relay];
        try {
          return await r.start();
        } catch (err) {
          if (this.databaseOutages[relay] === outages && this.databaseReachable(relay)) throw err;
        }
      }
    };
    const p = start().finally(() => this.starting.delete(relay));
    this.starting.set(relay, p);
    return p;
  }

  /** The database up (PostgreSQL topology) and every relay running. */
  async restartAll(): Promise<void> {
    await this.startDatabase();
    await Promise.all(this.relays.map((_, i) => this.restart(i)));
  }

  /**
   * For a failure report: each relay's last warnings and errors and, on PostgreSQL, the
   * database's client backends (by state, and those waiting on a lock or idle in a transaction).
   */
  async diagnostics(): Promise<string[]> {
    const lines: string[] = [];
    this.relays.forEach((r, i) => {
      const bad = r.logs.filter((l) => Number(l['level']) >= 40).slice(-5);
      if (bad.length > 0) lines.push(`relay ${RELAY_NAMES[i]} last warnings/errors: ${bad.map((l) => JSON.stringify(l)).join(' ')}`);
    });
    if (!this.postgres || this.databaseState !== 'up') return lines;
    const client = new pg.Client({ connectionString: this.postgres.url('postgres'), connectionTimeoutMillis: 5_000, query_timeout: 5_000 });
    try {
      await client.connect();
      const { rows } = await client.query<{ state: string | null; wait: string | null; age: string | null; query: string }>(
        `SELECT state, wait_event_type || ':' || wait_event AS wait, round(extract(epoch FROM now() - xact_start)::numeric, 1)::text AS age, left(regexp_replace(query, '\s+', ' ', 'g'), 100) AS query
           FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY xact_start NULLS LAST`,
      );
      const byState = new Map<string, number>();
      for (const row of rows) byState.set(row.state ?? '?', (byState.get(row.state ?? '?') ?? 0) + 1);
      lines.push(`database backends: ${[...byState].map(([s, n]) => `${n} ${s}`).join(', ')}`);
      for (const row of rows.filter((r) => r.state === 'idle in transaction' || r.wait?.startsWith('Lock')).slice(0, 8)) {
        lines.push(`  backend ${row.state}${row.wait ? ` waiting ${row.wait}` : ''}, transaction ${row.age} s old: ${row.query}`);
      }
    } catch (err) {
      lines.push(`database backends: not read (${(err as Error).message})`);
    } finally {
      await client.end().catch(() => {});
    }
    return lines;
  }

  /** Exits of relay processes that nobody asked for, since the last call (names and last logs). */
  takeUnexpectedExits(): string[] {
    return this.relays.flatMap((r, i) =>
      r.unexpectedExits
        .splice(0)
        .map(
          (e) =>
            `relay ${RELAY_NAMES[i]} exited by itself (code ${e.code}, signal ${e.signal}); stderr: ${e.stderr.slice(-3_000) || '(empty)'}; last logs: ${e.lastLogs.slice(-4).map((l) => JSON.stringify(l)).join(' ')}`,
        ),
    );
  }

  /** A relay's state of `doc` (HTTP GET /v1/docs/:name/update, straight to the relay, not through a proxy). */
  relayState(relay: number, doc: string): Promise<Uint8Array> {
    return this.relays[relay]!.docUpdate(doc);
  }

  /** Connections each proxy accepted (diagnostics). */
  connectionCounts(): Record<string, number> {
    return Object.fromEntries([...this.proxies].map(([l, p]) => [linkName(l), p.accepted]));
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.events.emit('database');
    await Promise.allSettled([...this.starting.values()]);
    await Promise.allSettled(this.relays.map((r) => r.dispose()));
    await Promise.allSettled([...this.proxies.values()].map((p) => p.close()));
    // A server given to the cluster is left running for its owner.
    if (this.ownsPostgres) await this.postgres?.close();
    else await this.startDatabase().catch(() => {});
  }
}

export function linkName(link: LinkId): string {
  const parts = link.split(':');
  if (parts[0] === 'peer') return `${RELAY_NAMES[Number(parts[1])]}→${RELAY_NAMES[Number(parts[2])]}`;
  if (parts[0] === 'db') return `${RELAY_NAMES[Number(parts[1])]}→db`;
  return `${parts[1]}↔${RELAY_NAMES[Number(parts[2])]}`;
}

export { allLinks, clientLink };
