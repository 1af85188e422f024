/**
 * The nemesis schedule of one chaos run: a pure function of (seed, duration, topology), so a
 * seed replays the same faults at the same offsets (what the network and the processes then
 * do is not deterministic, which is why runs print their seed and the schedule).
 *
 * The run is a series of rounds. In a round, one to three fault episodes start at random
 * offsets, overlapping each other; each ends at a random time within the round, or (half of
 * them) is still on when the round ends with a full heal. A quiet gap follows, in which the
 * run measures how long the replicas take to catch up. The last round's heal is the final
 * heal (`final`): the workload stops, everything heals, and replicas must converge. Episodes:
 * - partition 'client': one client cut from its relay (hold, reset, drop or one-way);
 * - partition 'relays': two relays cut from each other (both peer links);
 * - partition 'minority': one relay (with its clients) cut from the other two, the majority;
 * - partition 'ring': the relays can only talk one way around a ring (A→B→C→A or reverse):
 *   every peer link is one-way;
 * - partition 'clients-of': every client of one relay cut from it (the relay keeps its peers);
 * - 'delay': latency and jitter (reordering across links) on a few links;
 * - 'kill': SIGKILL a relay, restart it (same port, same data) when the episode ends;
 * - 'crash': a client dies without closing, and reopens from its storage when the episode ends.
 *
 * The 'postgres' topology (relays on one PostgreSQL database, no peer links; each relay's link
 * to the database through its own proxy) has no peer links to cut, so the peer-link partitions
 * become database partitions, one for one, with the same draws:
 * - 'relays' → 'database': one relay cut from the database (hold, reset, drop or one-way);
 * - 'minority' → 'minority': one relay cut from the database (with failover, also its clients
 *   from the other relays and theirs from it, as in the mesh);
 * - 'ring' → 'databases': two relays cut from the database, the third keeps it;
 * and one more episode kind:
 * - 'database': PostgreSQL stopped (`pg_ctl stop -m fast`), SIGKILLed (crash recovery at the
 *   start) or frozen (SIGSTOP), and started (resumed) again shortly after: 0.2-2 s.
 * The mesh's schedules draw exactly what they drew before this topology existed (a mesh seed
 * replays as it did).
 */
import { SeededRandom } from '../support/seeded-random.js';
import type { FaultMode } from '../support/fault-proxy.js';

export interface Topology {
  /** Relay names, e.g. ['A', 'B', 'C']. */
  relays: string[];
  /** Client names and the index of the relay each one is attached to. */
  clients: { name: string; relay: number }[];
  /** 'mesh' (default): relays peered with each other. 'postgres': relays on one database, no peers. */
  kind?: TopologyKind;
}

export type TopologyKind = 'mesh' | 'postgres';

/**
 * A link: a client's link to relay `relay`, relay `from`'s outgoing peer link to relay `to`
 * (mesh), or relay `relay`'s link to the database (postgres).
 */
export type LinkId = `client:${string}:${number}` | `peer:${number}:${number}` | `db:${number}`;

export const clientLink = (client: string, relay: number): LinkId => `client:${client}:${relay}`;
export const peerLink = (from: number, to: number): LinkId => `peer:${from}:${to}`;
export const dbLink = (relay: number): LinkId => `db:${relay}`;

export type CutMode = Exclude<FaultMode, 'pass'>;

export type PartitionKind = 'client' | 'relays' | 'minority' | 'ring' | 'clients-of' | 'database' | 'databases';

/** How the database goes away in a 'database' episode (and comes back at its end). */
export type DatabaseOutage = 'stop' | 'kill' | 'pause';

export type Fault =
  | { type: 'partition'; kind: PartitionKind; cuts: { link: LinkId; mode: CutMode }[]; label: string }
  | { type: 'delay'; links: LinkId[]; ms: number; jitterMs: number; label: string }
  | { type: 'kill'; relay: number; label: string }
  | { type: 'crash'; client: string; label: string }
  | { type: 'database'; how: DatabaseOutage; label: string };

export type Step =
  | { at: number; op: 'start'; id: number; fault: Fault }
  | { at: number; op: 'end'; id: number; fault: Fault }
  /** Everything back to normal: links pass without delay, relays up, clients open; ends the faults still on. */
  | { at: number; op: 'heal'; round: number; final: boolean };

export interface Schedule {
  seed: number;
  durationMs: number;
  steps: Step[];
  counts: { partitions: number; delays: number; kills: number; crashes: number; heals: number; databaseOutages: number };
}

export interface ScheduleOptions {
  /** Clients that may crash (default all). */
  crashable?: string[];
  /**
   * Links each client has: its own relay only (default), or every relay (clients that fail
   * over). A client partition cuts all of its links.
   */
  clientLinksTo?: 'own' | 'all';
}

const CUT_MODES: CutMode[] = ['hold', 'hold', 'reset', 'drop', 'one-way-up', 'one-way-down'];
const WHAT_MESH = ['partition', 'partition', 'partition', 'delay', 'kill', 'crash'] as const;
const WHAT_POSTGRES = ['partition', 'partition', 'partition', 'delay', 'kill', 'crash', 'database'] as const;

/** All links of a topology. */
export function allLinks(topology: Topology, options: ScheduleOptions = {}): LinkId[] {
  const links: LinkId[] = [];
  for (const c of topology.clients) links.push(...linksOfClient(topology, c.name, options));
  const n = topology.relays.length;
  if (topology.kind === 'postgres') for (let r = 0; r < n; r++) links.push(dbLink(r));
  else for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) links.push(peerLink(a, b));
  return links;
}

export function linksOfClient(topology: Topology, client: string, options: ScheduleOptions = {}): LinkId[] {
  const c = topology.clients.find((x) => x.name === client);
  if (!c) throw new Error(`no client ${client}`);
  if (options.clientLinksTo === 'all') {
    // Its own relay first (the order the client tries them).
    const order = [c.relay, ...topology.relays.map((_, i) => i).filter((i) => i !== c.relay)];
    return order.map((r) => clientLink(client, r));
  }
  return [clientLink(client, c.relay)];
}

export function generateSchedule(seed: number, durationMs: number, topology: Topology, options: ScheduleOptions = {}): Schedule {
  // A stream of its own (not shared with the workload), so the schedule depends on nothing else.
  const rnd = new SeededRandom((seed ^ 0x5eed_c4a0) >>> 0);
  const n = topology.relays.length;
  const crashable = options.crashable ?? topology.clients.map((c) => c.name);
  const steps: Step[] = [];
  const counts = { partitions: 0, delays: 0, kills: 0, crashes: 0, heals: 0, databaseOutages: 0 };
  const postgres = topology.kind === 'postgres';
  let id = 0;
  let round = 0;
  let t = rnd.int(100, 400);
  const name = (r: number) => topology.relays[r]!;

  const partition = (): Fault => {
    const kind = rnd.pick(['client', 'client', 'relays', 'minority', 'ring', 'clients-of'] as const);
    const mode = () => rnd.pick(CUT_MODES);
    switch (kind) {
      case 'client': {
        const c = rnd.pick(topology.clients).name;
        const m = mode();
        return { type: 'partition', kind, cuts: linksOfClient(topology, c, options).map((link) => ({ link, mode: m })), label: `cut ${c} (${m})` };
      }
      case 'relays': {
        const a = rnd.int(0, n - 1);
        const b = (a + rnd.int(1, n - 1)) % n;
        const m = mode();
        if (postgres) return { type: 'partition', kind: 'database', cuts: [{ link: dbLink(a), mode: m }], label: `cut ${name(a)} from the database (${m})` };
        return { type: 'partition', kind, cuts: [peerLink(a, b), peerLink(b, a)].map((link) => ({ link, mode: m })), label: `cut ${name(a)}-${name(b)} (${m})` };
      }
      case 'minority': {
        const x = rnd.int(0, n - 1);
        const m = mode();
        const cuts: { link: LinkId; mode: CutMode }[] = [];
        if (postgres) cuts.push({ link: dbLink(x), mode: m });
        for (let o = 0; o < n && !postgres; o++) {
          if (o === x) continue;
          cuts.push({ link: peerLink(x, o), mode: m }, { link: peerLink(o, x), mode: m });
        }
        // With failover, the minority's clients cannot reach the majority either (and vice versa).
        if (options.clientLinksTo === 'all') {
          for (const c of topology.clients) {
            for (let r = 0; r < n; r++) if ((c.relay === x) !== (r === x)) cuts.push({ link: clientLink(c.name, r), mode: m });
          }
        }
        const majority = topology.relays.filter((_, i) => i !== x).join('');
        return { type: 'partition', kind, cuts, label: `minority ${name(x)} | majority ${majority}${postgres ? ' with the database' : ''} (${m})` };
      }
      case 'ring': {
        // Relay i may send only to relay i+step: on link i→i+step bytes flow up (i's requests
        // reach the peer, its answers do not come back); on link i+step→i only down.
        const step = rnd.pick([1, n - 1]);
        if (postgres) {
          // Two relays cut from the database (each its own mode), the one at `step` keeps it.
          const kept = step % n;
          const cuts = topology.relays.flatMap((_, r) => (r === kept ? [] : [{ link: dbLink(r), mode: mode() }]));
          return {
            type: 'partition',
            kind: 'databases',
            cuts,
            label: `cut ${cuts.map((c) => `${name(Number(c.link.slice(3)))} (${c.mode})`).join(', ')} from the database`,
          };
        }
        const cuts: { link: LinkId; mode: CutMode }[] = [];
        for (let i = 0; i < n; i++) {
          const next = (i + step) % n;
          cuts.push({ link: peerLink(i, next), mode: 'one-way-up' }, { link: peerLink(next, i), mode: 'one-way-down' });
        }
        const order = Array.from({ length: n + 1 }, (_, k) => name((k * step) % n)).join('→');
        return { type: 'partition', kind, cuts, label: `ring ${order}` };
      }
      case 'clients-of': {
        const x = rnd.int(0, n - 1);
        const m = mode();
        const cuts = topology.clients.filter((c) => c.relay === x).map((c) => ({ link: clientLink(c.name, x), mode: m }));
        return { type: 'partition', kind, cuts, label: `cut clients of ${name(x)} (${m})` };
      }
    }
  };

  while (t < durationMs) {
    round++;
    const roundMs = rnd.int(1_000, 6_000);
    const episodes = rnd.int(1, 3);
    const killed = new Set<number>();
    const crashed = new Set<string>();
    let databaseOut = false;
    for (let e = 0; e < episodes; e++) {
      const start = t + rnd.int(0, Math.floor(roundMs / 2));
      // Null: still on at the round's heal, which ends it.
      let end = rnd.next() < 0.5 ? null : Math.min(t + roundMs, start + rnd.int(300, roundMs));
      const what = rnd.pick(postgres ? WHAT_POSTGRES : WHAT_MESH);
      let fault: Fault;
      if (what === 'partition') {
        fault = partition();
        counts.partitions++;
      } else if (what === 'delay') {
        const links = allLinks(topology, options);
        const chosen = new Set<LinkId>();
        const k = rnd.int(1, 6);
        for (let i = 0; i < k; i++) chosen.add(rnd.pick(links));
        const ms = rnd.int(2, 120);
        const jitterMs = rnd.int(0, 150);
        fault = { type: 'delay', links: [...chosen], ms, jitterMs, label: `delay ${ms}+${jitterMs}ms on ${chosen.size} link(s)` };
        counts.delays++;
      } else if (what === 'kill') {
        const r = rnd.int(0, n - 1);
        // One episode per relay at a time; never all relays down at once.
        if (killed.has(r) || killed.size >= n - 1) continue;
        killed.add(r);
        fault = { type: 'kill', relay: r, label: `kill -9 relay ${name(r)}` };
        counts.kills++;
      } else if (what === 'database') {
        // One outage of the one database at a time, and a short one.
        const how = rnd.pick<DatabaseOutage>(['stop', 'kill', 'pause']);
        const ms = rnd.int(200, 2_000);
        if (databaseOut) continue;
        databaseOut = true;
        end = Math.min(t + roundMs, start + ms);
        const verb = { stop: 'stop', kill: 'kill -9', pause: 'freeze (SIGSTOP)' }[how];
        fault = { type: 'database', how, label: `${verb} PostgreSQL for ${end - start} ms` };
        counts.databaseOutages++;
      } else {
        if (crashable.length === 0) continue;
        const c = rnd.pick(crashable);
        if (crashed.has(c)) continue;
        crashed.add(c);
        fault = { type: 'crash', client: c, label: `crash ${c}` };
        counts.crashes++;
      }
      id++;
      steps.push({ at: start, op: 'start', id, fault });
      if (end !== null) steps.push({ at: end, op: 'end', id, fault });
    }
    t += roundMs;
    steps.push({ at: t, op: 'heal', round, final: false });
    counts.heals++;
    t += rnd.int(300, 1_200);
  }
  const last = steps.filter((s) => s.op === 'heal').pop();
  if (last && last.op === 'heal') last.final = true;
  // Stable: by time, then heals last among equals, then starts before ends of later ids.
  const rank = (s: Step) => (s.op === 'heal' ? 2 : s.op === 'end' ? 1 : 0);
  steps.sort((a, b) => a.at - b.at || rank(a) - rank(b) || ('id' in a && 'id' in b ? a.id - b.id : 0));
  return { seed, durationMs, steps, counts };
}

export function describeStep(s: Step): string {
  const at = `${(s.at / 1000).toFixed(2)}s`;
  if (s.op === 'heal') return `${at} ${s.final ? 'final heal' : 'heal all'} (round ${s.round})`;
  return `${at} ${s.op === 'start' ? '+' : '-'}#${s.id} ${s.fault.label}`;
}
