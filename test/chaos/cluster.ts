/**
 * The chaos topology: three relays (real `capsync-server` processes with SQLite in temp
 * directories, restartable on the same port), peered with each other, every link through its
 * own fault proxy:
 * - relay X's outgoing peer link to relay Y goes to proxy X→Y (X is started with
 *   `--peer <url of proxy X→Y>`), so the two directions of a relay pair are two proxies;
 * - each client's link to a relay goes to its own proxy (one per client and relay it may use).
 * The relays and the peer proxies live as long as the cluster, across seeds; client proxies
 * too (a client name keeps its proxies). Faults on links are reference-counted, so
 * overlapping episodes of a schedule combine (the most severe mode wins; the largest delay).
 */
import { FaultProxy, type DelaySpec, type FaultMode } from '../support/fault-proxy.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { SeededRandom } from '../support/seeded-random.js';
import { allLinks, clientLink, linksOfClient, peerLink, type CutMode, type LinkId, type ScheduleOptions, type Topology } from './schedule.js';

export type PeerMode = 'on-demand' | 'replicate-all';

export interface ClusterOptions {
  peerMode?: PeerMode;
  /** Clients get a list of relay URLs, their own relay first (needs createClient({ url: string[] })). */
  failover?: boolean;
  /** Extra relay CLI flags. */
  relayArgs?: string[];
  /** False: relays without --peer (a control run: the checks must fail). Default true. */
  peering?: boolean;
  log?: (line: string) => void;
}

export const RELAY_NAMES = ['A', 'B', 'C'];

/** 6 workload clients, 2 per relay, and the two trace agents on A and B. */
export const TOPOLOGY: Topology = {
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

/** The relays' shared relay credential (open relays trust only it as a peer). */
const CHAOS_MESH_TOKEN = 'chaos-mesh-token';

const SEVERITY: Record<CutMode, number> = { 'one-way-up': 1, 'one-way-down': 1, hold: 2, drop: 3, reset: 4 };

export class ChaosCluster {
  readonly topology = TOPOLOGY;
  readonly relays: RestartableRelay[] = [];
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
      const relay = await RestartableRelay.start(['--relay-id', RELAY_NAMES[r]!, '--peer-token', CHAOS_MESH_TOKEN, ...peerArgs(r), '--peer-mode', this.peerMode, ...(this.options.relayArgs ?? [])]);
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
    for (const c of this.topology.clients) {
      for (const link of linksOfClient(this.topology, c.name, this.scheduleOptions)) {
        const relay = Number(link.split(':')[2]);
        this.proxies.set(link, await FaultProxy.start(this.portOf(relay), { random, name: linkName(link) }));
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
  }

  /** Every link back to 'pass' without delay. */
  healLinks(): void {
    this.cuts.clear();
    this.delays.clear();
    for (const p of this.proxies.values()) p.heal();
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

  /** Starts a stopped relay again on its port with its data; concurrent calls share the start. */
  restart(relay: number): Promise<void> {
    const inFlight = this.starting.get(relay);
    if (inFlight) return inFlight;
    const r = this.relays[relay]!;
    if (r.running || this.disposed) return Promise.resolve();
    const p = r.start().finally(() => this.starting.delete(relay));
    this.starting.set(relay, p);
    return p;
  }

  /** Every relay running. */
  async restartAll(): Promise<void> {
    await Promise.all(this.relays.map((_, i) => this.restart(i)));
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
    await Promise.allSettled([...this.starting.values()]);
    await Promise.allSettled(this.relays.map((r) => r.dispose()));
    await Promise.allSettled([...this.proxies.values()].map((p) => p.close()));
  }
}

export function linkName(link: LinkId): string {
  const parts = link.split(':');
  if (parts[0] === 'peer') return `${RELAY_NAMES[Number(parts[1])]}→${RELAY_NAMES[Number(parts[2])]}`;
  return `${parts[1]}↔${RELAY_NAMES[Number(parts[2])]}`;
}

export { allLinks, clientLink };
