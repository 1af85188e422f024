/**
 * The concurrent editing trace friendsforever (two people typing into one document at once),
 * replayed by two capsync clients, one per agent, while the nemesis runs.
 *
 * A transaction's positions refer to the document as its agent saw it after its `parents`, but
 * the agent's client may hold more by then (the other agent's later edits arrive on their
 * own). So each agent keeps a shadow Y.Doc holding exactly the version it saw; the edit is
 * made there, and its update is applied to the client's doc as a local change (stored,
 * counted pending, sent, exactly as typing). Agent k's edits carry Yjs clientID k + 1: where
 * both agents insert at one place, Yjs orders by clientID, and endContent has the lower agent
 * first. Before an agent's transaction its client must have received the parents over the
 * network (through relays, peer links and the nemesis): the replay waits for that, as the
 * person waited to see the other's typing.
 *
 * A client that crashes loses what it had not saved; when it reopens, the agent's editor types
 * it again from the shadow (`restore`), which is the text on the person's screen.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import * as Y from 'yjs';

export const TRACE_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../data/friendsforever.json.gz');
export const TRACE_TEXT = 'text';

export type Patch = [position: number, deleteCount: number, insert: string];

export interface TraceTxn {
  agent: number;
  parents: number[];
  patches: Patch[];
}

export interface ConcurrentTrace {
  numAgents: number;
  txns: TraceTxn[];
  endContent: string;
}

let cached: ConcurrentTrace | null = null;

/** Loads test/data/friendsforever.json.gz; throws (never skips) when it is missing or malformed. */
export function loadTrace(file = TRACE_FILE): ConcurrentTrace {
  if (file === TRACE_FILE && cached) return cached;
  if (!fs.existsSync(file)) {
    throw new Error(`editing trace ${file} is missing: the chaos tests replay it (see test/data/ATTRIBUTION.md); restore it from git`);
  }
  const json = JSON.parse(gunzipSync(fs.readFileSync(file)).toString('utf8')) as {
    kind?: unknown;
    endContent?: unknown;
    numAgents?: unknown;
    txns?: unknown;
  };
  if (json.kind !== 'concurrent' || typeof json.endContent !== 'string' || typeof json.numAgents !== 'number' || !Array.isArray(json.txns)) {
    throw new Error(`editing trace ${file}: not a concurrent trace`);
  }
  const numAgents = json.numAgents;
  const txns = (json.txns as { agent?: unknown; parents?: unknown; patches?: unknown }[]).map((t, i): TraceTxn => {
    const { agent, parents, patches } = t;
    if (typeof agent !== 'number' || agent < 0 || agent >= numAgents) throw new Error(`trace: transaction ${i} has a bad agent`);
    if (!Array.isArray(parents) || !parents.every((p) => Number.isInteger(p) && p >= 0 && p < i)) throw new Error(`trace: transaction ${i} has bad parents`);
    const ok = Array.isArray(patches) && patches.every((p) => Array.isArray(p) && p.length === 3 && Number.isInteger(p[0]) && Number.isInteger(p[1]) && typeof p[2] === 'string');
    if (!ok) throw new Error(`trace: transaction ${i} has malformed patches`);
    return { agent, parents: parents as number[], patches: patches as Patch[] };
  });
  const trace = { numAgents, txns, endContent: json.endContent };
  if (file === TRACE_FILE) cached = trace;
  return trace;
}

/** What proves a transaction's update arrived: its last inserted character, or a character it deleted. */
type Witness = { kind: 'clock'; client: number; clock: number } | { kind: 'deleted'; id: Y.ID } | null;

function arrived(doc: Y.Doc, w: Witness): boolean {
  if (w === null) return true;
  if (w.kind === 'clock') return Y.getState(doc.store, w.client) >= w.clock;
  if (Y.getState(doc.store, w.id.client) <= w.id.clock) return false;
  return Y.getItem(doc.store, w.id).deleted;
}

/**
 * The shadow-doc replay, without a network: the agents' versions and their edits. The
 * network replay (`TraceReplay`) drives the same steps; `referenceText` runs it alone, which
 * gives the expected text of a prefix (and, for the whole trace, must equal endContent).
 */
class ShadowReplay {
  readonly shadows: Y.Doc[];
  readonly updates: (Uint8Array | null)[];
  readonly witnesses: Witness[];
  private readonly seen: Uint8Array[];

  constructor(readonly trace: ConcurrentTrace) {
    this.shadows = Array.from({ length: trace.numAgents }, (_, agent) => {
      const shadow = new Y.Doc();
      shadow.clientID = agent + 1;
      return shadow;
    });
    this.updates = new Array(trace.txns.length).fill(null);
    this.witnesses = new Array(trace.txns.length).fill(null);
    this.seen = this.shadows.map(() => new Uint8Array(trace.txns.length));
  }

  /** Transactions of other agents that txn `i` follows and its agent has not seen; the latest one per agent. */
  missingParents(i: number): { missing: number[]; latest: Map<number, number> } {
    const { agent, parents } = this.trace.txns[i]!;
    const seen = this.seen[agent]!;
    const missing: number[] = [];
    const stack = [...parents];
    while (stack.length > 0) {
      const j = stack.pop()!;
      if (seen[j]) continue;
      seen[j] = 1;
      missing.push(j);
      stack.push(...this.trace.txns[j]!.parents);
    }
    missing.sort((x, y) => x - y);
    const latest = new Map<number, number>();
    for (const j of missing) {
      const other = this.trace.txns[j]!.agent;
      if (other === agent) throw new Error(`trace: transaction ${i} depends on its own agent's transaction ${j}, not yet replayed`);
      latest.set(other, j);
    }
    return { missing, latest };
  }

  /** Merges the missing parents into the agent's shadow, makes the edit there, returns its update. */
  edit(i: number, missing: number[]): Uint8Array | null {
    const { agent, patches } = this.trace.txns[i]!;
    const shadow = this.shadows[agent]!;
    shadow.transact(() => {
      for (const j of missing) if (this.updates[j]) Y.applyUpdate(shadow, this.updates[j]);
    });
    const text = shadow.getText(TRACE_TEXT);
    let update = null as Uint8Array | null;
    let deleted = null as Y.ID | null;
    const keep = (u: Uint8Array): void => {
      update = update ? Y.mergeUpdates([update, u]) : u;
    };
    shadow.on('update', keep);
    shadow.transact(() => {
      for (const [pos, del, ins] of patches) {
        if (del > 0) {
          deleted ??= Y.createRelativePositionFromTypeIndex(text, pos).item;
          text.delete(pos, del);
        }
        if (ins.length > 0) text.insert(pos, ins);
      }
    });
    shadow.off('update', keep);
    this.seen[agent]![i] = 1;
    this.updates[i] = update;
    const inserted = patches.some(([, , ins]) => ins.length > 0);
    this.witnesses[i] = inserted
      ? { kind: 'clock', client: shadow.clientID, clock: Y.getState(shadow.store, shadow.clientID) }
      : deleted
        ? { kind: 'deleted', id: deleted }
        : null;
    return update;
  }

  destroy(): void {
    for (const s of this.shadows) s.destroy();
  }
}

/** The text every replica must hold after the first `count` transactions (the whole trace: endContent). */
export function referenceText(trace: ConcurrentTrace, count = trace.txns.length): string {
  const replay = new ShadowReplay(trace);
  try {
    for (let i = 0; i < count; i++) replay.edit(i, replay.missingParents(i).missing);
    const merged = new Y.Doc();
    for (let i = 0; i < count; i++) if (replay.updates[i]) Y.applyUpdate(merged, replay.updates[i]!);
    return merged.getText(TRACE_TEXT).toString();
  } finally {
    replay.destroy();
  }
}

/** Origin of the agents' typing in their client's doc (anything but the client's own origins is local). */
export const TYPING = Symbol('chaos:typing');

export interface TraceReplayOptions {
  /** Replay the first `count` transactions (default all). */
  count?: number;
  /** Transactions typed per event-loop task (default 8). */
  perTask?: number;
  /** Give up when the other agent's edit has not arrived this long (default 120 s). */
  waitTimeoutMs?: number;
}

export interface TraceStats {
  txns: number;
  /** Transactions applied to a live client doc (each one is a write that must be accepted locally). */
  attempted: number;
  applied: number;
  /** Waits for the other agent's edits to arrive over the network, and the time spent. */
  waits: number;
  waitMs: number;
  /** Times an agent's client was reopened after a crash and retyped what it lost. */
  restores: number;
  ms: number;
}

/**
 * The network replay. `docOf(agent)` is the agent's live client doc, or null while its
 * client is down; call `sessionChanged(agent)` whenever that changes (after a reopen, also
 * `restore`).
 */
export class TraceReplay {
  readonly count: number;
  readonly stats: TraceStats;
  private readonly shadow: ShadowReplay;
  private readonly perTask: number;
  private readonly waitTimeoutMs: number;
  private readonly sessionListeners = new Set<(agent: number) => void>();
  private aborted: Error | null = null;
  private readonly abortListeners = new Set<(err: Error) => void>();

  constructor(
    readonly trace: ConcurrentTrace,
    private readonly docOf: (agent: number) => Y.Doc | null,
    options: TraceReplayOptions = {},
  ) {
    this.count = Math.min(options.count ?? trace.txns.length, trace.txns.length);
    this.perTask = options.perTask ?? 8;
    this.waitTimeoutMs = options.waitTimeoutMs ?? 120_000;
    this.shadow = new ShadowReplay(trace);
    this.stats = { txns: this.count, attempted: 0, applied: 0, waits: 0, waitMs: 0, restores: 0, ms: 0 };
  }

  /** The text all replicas must end with. */
  expectedText(): string {
    return this.count === this.trace.txns.length ? this.trace.endContent : referenceText(this.trace, this.count);
  }

  sessionChanged(agent: number): void {
    for (const l of [...this.sessionListeners]) l(agent);
  }

  /** After a crash: the agent types again, from its screen (the shadow), whatever its reopened client lacks. */
  restore(agent: number, doc: Y.Doc): void {
    const shadow = this.shadow.shadows[agent]!;
    const missing = Y.encodeStateAsUpdate(shadow, Y.encodeStateVector(doc));
    Y.applyUpdate(doc, missing, TYPING);
    this.stats.restores++;
  }

  abort(err: Error): void {
    if (this.aborted) return;
    this.aborted = err;
    for (const l of [...this.abortListeners]) l(err);
  }

  async run(): Promise<TraceStats> {
    const t0 = performance.now();
    for (let i = 0; i < this.count; i++) {
      if (this.aborted) throw this.aborted;
      const { agent } = this.trace.txns[i]!;
      const { missing, latest } = this.shadow.missingParents(i);
      // The agent's client must have received what the agent saw (the other agent's updates arrive in order: the latest suffices).
      for (const j of latest.values()) await this.waitFor(agent, (doc) => arrived(doc, this.shadow.witnesses[j]!), `transaction ${j}`);
      const doc = this.docOf(agent) ?? (await this.waitFor(agent, () => true, 'its client to reopen'));
      const update = this.shadow.edit(i, missing);
      if (update) {
        this.stats.attempted++;
        Y.applyUpdate(doc, update, TYPING);
        if (arrived(doc, this.shadow.witnesses[i]!)) this.stats.applied++;
      }
      if (i % this.perTask === this.perTask - 1) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.stats.ms = performance.now() - t0;
    return this.stats;
  }

  destroy(): void {
    this.shadow.destroy();
  }

  /** Resolves with the agent's live doc once `check(doc)` holds, following reopens. */
  private waitFor(agent: number, check: (doc: Y.Doc) => boolean, what: string): Promise<Y.Doc> {
    const now = this.docOf(agent);
    if (now && check(now)) return Promise.resolve(now);
    this.stats.waits++;
    const w0 = performance.now();
    return new Promise<Y.Doc>((resolve, reject) => {
      let watched: Y.Doc | null = null;
      const onTxn = () => test();
      const watch = () => {
        watched?.off('afterTransaction', onTxn);
        watched = this.docOf(agent);
        watched?.on('afterTransaction', onTxn);
      };
      const test = () => {
        const doc = this.docOf(agent);
        if (doc && check(doc)) {
          done();
          resolve(doc);
        }
      };
      const onSession = (a: number) => {
        if (a !== agent) return;
        watch();
        test();
      };
      const onAbort = (err: Error) => {
        done();
        reject(err);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`trace replay: agent ${agent} waited ${this.waitTimeoutMs} ms for ${what}`));
      }, this.waitTimeoutMs);
      const done = () => {
        clearTimeout(timer);
        watched?.off('afterTransaction', onTxn);
        this.sessionListeners.delete(onSession);
        this.abortListeners.delete(onAbort);
        this.stats.waitMs += performance.now() - w0;
      };
      this.sessionListeners.add(onSession);
      this.abortListeners.add(onAbort);
      watch();
    });
  }
}
