/**
 * A linearizability checker: the Wing & Gong search with Lowe's memoization, as Porcupine
 * implements it, over a sequential specification (`Model`).
 *
 * A history is linearizable if its operations can be put in one total order that (1) respects
 * real time: an operation that returned before another was invoked comes first, and (2) is a
 * legal run of the model from its initial state. Operations with `ret = Infinity`
 * (indeterminate outcomes) may be placed anywhere after their call; with a model that lets
 * them change nothing, that also covers "never took effect".
 *
 * The search (Wing & Gong 1993; Lowe 2017 "Testing for linearizability"):
 * - call and return events sorted by time (calls before returns on ties, so operations that
 *   touch at one instant count as concurrent: the lenient reading) in a doubly linked list;
 * - depth-first: linearize the first call event in the list whose step is legal, unlink it and
 *   its return event ("lift"), start again from the head; on reaching a return event whose
 *   call is still unlinearized, that operation's deadline has passed: undo the last
 *   linearization ("unlift") and try the next candidate after it;
 * - a cache of visited configurations (the set of linearized operations as a bitset, the model
 *   state): reaching one again cannot succeed where it failed before, so it is skipped.
 *
 * Nondeterministic models (`step` returning several states) are handled as Porcupine does:
 * the search runs over the power set, a configuration's state being the set of every state the
 * model may be in. Deterministic steps keep sets of one.
 *
 * One addition to Porcupine, opt-in through `Model.inert`: an operation the model declares
 * inert (legal and a no-op in the current state and in every state reachable from it, e.g. an
 * indeterminate acquire, or a lease's "lost" once a newer token was granted) is linearized at
 * once, as the only move of its configuration. Any linearization can be rearranged to put such
 * an operation first (it can follow nothing, since it is callable, and changes nothing), so
 * this loses no linearization. It keeps the ever-pending `ret = Infinity` operations from
 * doubling the search space each.
 */
import type { Operation } from './history.js';

/** A sequential specification. */
export interface Model<S, I, O> {
  /** The state before any operation. */
  init(): S;
  /**
   * The states the model may be in after `input` answered `output` (`undefined` = an
   * indeterminate outcome) in `state`. Empty: the operation is illegal there. Several: the
   * model is nondeterministic (e.g. an indeterminate operation that may or may not have taken
   * effect). Must not mutate `state`.
   */
  step(state: S, input: I, output: O | undefined): S[];
  /** Equal for states that behave the same, different otherwise (the cache relies on it). */
  hash(state: S): string;
  /**
   * P-compositionality: splits a history into independent sub-histories (by key, say) that
   * are checked separately. A history is linearizable iff each part is (Herlihy & Wing), so
   * this is an optimization only when the parts really share no state.
   */
  partition?(ops: readonly Operation<I, O>[]): Operation<I, O>[][];
  /** One line about an operation, for failure reports. */
  describe(op: Operation<I, O>): string;
  /** One line about a state, for failure reports (default: its hash). */
  describeState?(state: S): string;
  /**
   * Optional and a pure optimization: true only if `step(s, input, output)` is `[s]` (legal,
   * no change) for `state` and for every state reachable from it. Answering false is always
   * safe.
   */
  inert?(state: S, input: I, output: O | undefined): boolean;
}

export type CheckResult<I, O> =
  | { ok: true }
  | {
      ok: false;
      reason: string;
      /** The longest order of operations (of the failing partition) found legal. */
      longestPrefix: Operation<I, O>[];
      /** The operation whose return came while it could not be linearized after that prefix. */
      blocked?: Operation<I, O>;
    }
  | { ok: 'timeout' };

export interface CheckOptions {
  /** Give up after this long (default: no limit), answering `{ ok: 'timeout' }`. */
  timeoutMs?: number;
}

/**
 * Checks that `ops` is linearizable with respect to `model`. Partitions (if the model has
 * `partition`) are checked one after another; the first failing one is reported; a timeout
 * in any partition answers 'timeout' unless another partition fails.
 */
export function checkLinearizable<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], opts: CheckOptions = {}): CheckResult<I, O> {
  const deadline = opts.timeoutMs === undefined ? Infinity : performance.now() + opts.timeoutMs;
  const parts = model.partition ? model.partition(ops) : [ops.slice()];
  let timedOut = false;
  for (const part of parts) {
    const result = checkPartition(model, part, deadline);
    if (result.ok === false) return result;
    if (result.ok === 'timeout') timedOut = true;
  }
  return timedOut ? { ok: 'timeout' } : { ok: true };
}

/** A node of the event list: a call event (with `match`, its return event) or a return event. */
interface Entry {
  readonly op: number;
  /** The return event, for a call event; null for a return event. */
  readonly match: Entry | null;
  prev: Entry | null;
  next: Entry | null;
}

/** The model states a configuration may be in, with a canonical key for the cache. */
interface StateSet<S> {
  readonly states: readonly S[];
  readonly key: string;
}

interface Frame<S> {
  readonly entry: Entry;
  /** The state before this operation was linearized, to restore on undo. */
  readonly before: StateSet<S>;
  /** Linearized as its configuration's only move (inert): undoing it fails that configuration too. */
  readonly forced: boolean;
}

function checkPartition<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], deadline: number): CheckResult<I, O> {
  const n = ops.length;
  if (n === 0) return { ok: true };
  const head = buildList(ops);
  const zobrist = new Zobrist(n);
  const bits = new Bitset(zobrist);
  const cache = new ConfigCache(zobrist);

  const step = (set: StateSet<S>, op: Operation<I, O>): StateSet<S> | null => stepSet(model, set, op);
  const inert = model.inert
    ? (set: StateSet<S>, op: Operation<I, O>): boolean => set.states.every((s) => model.inert!(s, op.input, op.output))
    : null;

  const init = model.init();
  let state: StateSet<S> = { states: [init], key: model.hash(init) };
  const stack: Frame<S>[] = [];
  let best: { prefix: Operation<I, O>[]; blocked: Operation<I, O>; state: StateSet<S> } | null = null;

  const lift = (entry: Entry, next: StateSet<S>, forced: boolean): void => {
    stack.push({ entry, before: state, forced });
    state = next;
    bits.set(entry.op);
    unlink(entry);
  };

  let entry: Entry | null = head.next;
  let fresh = true; // `entry` is the head of a configuration not yet scanned for inert operations
  let iterations = 0;
  while (head.next !== null) {
    if ((iterations++ & 1023) === 0 && performance.now() >= deadline) return { ok: 'timeout' };

    let backtrack = false;
    if (fresh && inert) {
      fresh = false;
      // Callable operations are the call events before the first return event.
      let forced: Entry | null = null;
      for (let e: Entry | null = head.next; e !== null && e.match !== null; e = e.next) {
        if (inert(state, ops[e.op]!)) {
          forced = e;
          break;
        }
      }
      if (forced) {
        if (cache.add(bits, forced.op, state.key)) {
          lift(forced, state, true);
          entry = head.next;
          fresh = true;
          continue;
        }
        // The configuration after it was explored and failed, so this one fails too.
        backtrack = true;
      }
    }

    if (!backtrack) {
      const e: Entry = entry!;
      if (e.match !== null) {
        const next = step(state, ops[e.op]!);
        if (next !== null && cache.add(bits, e.op, next.key)) {
          lift(e, next, false);
          entry = head.next;
          fresh = true;
        } else {
          entry = e.next;
        }
        continue;
      }
      // A return event: its operation must have been linearized by now, and was not.
      if (best === null || stack.length > best.prefix.length) {
        best = { prefix: stack.map((f) => ops[f.entry.op]!), blocked: ops[e.op]!, state };
      }
    }

    // Undo the last linearization and try the next candidate after it; a forced one was its
    // configuration's only move, so undo past it.
    for (;;) {
      const frame = stack.pop();
      if (frame === undefined) return failure(model, ops, best);
      relink(frame.entry);
      bits.clear(frame.entry.op);
      state = frame.before;
      if (!frame.forced) {
        entry = frame.entry.next;
        break;
      }
    }
  }
  return { ok: true };
}

function failure<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  best: { prefix: Operation<I, O>[]; blocked: Operation<I, O>; state: StateSet<S> } | null,
): CheckResult<I, O> {
  if (best === null) return { ok: false, reason: 'not linearizable', longestPrefix: [] };
  const describeState = (s: S): string => (model.describeState ? model.describeState(s) : model.hash(s));
  const tail = best.prefix.slice(-5).map((o) => `  ${model.describe(o)}`);
  const reason = [
    `not linearizable: ${model.describe(best.blocked)} returned while no legal order could place it.`,
    `Longest legal prefix: ${best.prefix.length} of ${ops.length} operations${tail.length ? `, ending with:\n${tail.join('\n')}` : ''}`,
    `State after it: ${best.state.states.map(describeState).join(' | ')}`,
  ].join('\n');
  return { ok: false, reason, longestPrefix: best.prefix, blocked: best.blocked };
}

function stepSet<S, I, O>(model: Model<S, I, O>, set: StateSet<S>, op: Operation<I, O>): StateSet<S> | null {
  if (set.states.length === 1) {
    const next = model.step(set.states[0]!, op.input, op.output);
    if (next.length === 0) return null;
    if (next.length === 1) return { states: next, key: model.hash(next[0]!) };
    return canonical(model, next);
  }
  const all: S[] = [];
  for (const s of set.states) for (const t of model.step(s, op.input, op.output)) all.push(t);
  return all.length === 0 ? null : canonical(model, all);
}

/** Deduplicates states by hash and keys the set by its sorted hashes. */
function canonical<S, I, O>(model: Model<S, I, O>, states: readonly S[]): StateSet<S> {
  const byHash = new Map<string, S>();
  for (const s of states) {
    const h = model.hash(s);
    if (!byHash.has(h)) byHash.set(h, s);
  }
  if (byHash.size === 1) {
    const [key, s] = byHash.entries().next().value!;
    return { states: [s], key };
  }
  const keys = [...byHash.keys()].sort();
  return { states: keys.map((k) => byHash.get(k)!), key: keys.join('\u0000') };
}

/**
 * The event list, sorted by time with call events first on ties; returns its head sentinel.
 * Infinite returns sort last, so an indeterminate operation can be linearized any time after
 * its call.
 */
function buildList<I, O>(ops: readonly Operation<I, O>[]): Entry {
  type Event = { time: number; isCall: boolean; op: number };
  const events: Event[] = [];
  ops.forEach((o, i) => {
    if (!Number.isFinite(o.call) || !(o.ret >= o.call)) throw new RangeError(`operation ${o.id}: bad times [${o.call}, ${o.ret}]`);
    events.push({ time: o.call, isCall: true, op: i }, { time: o.ret, isCall: false, op: i });
  });
  events.sort((a, b) => {
    if (a.time !== b.time) return a.time < b.time ? -1 : 1;
    if (a.isCall !== b.isCall) return a.isCall ? -1 : 1;
    return a.op - b.op;
  });
  const returns = new Map<number, Entry>();
  const entries = events.map((ev) => {
    if (ev.isCall) return { ev, entry: null as Entry | null };
    const entry: Entry = { op: ev.op, match: null, prev: null, next: null };
    returns.set(ev.op, entry);
    return { ev, entry };
  });
  const head: Entry = { op: -1, match: null, prev: null, next: null };
  let last = head;
  for (const item of entries) {
    const entry = item.entry ?? { op: item.ev.op, match: returns.get(item.ev.op)!, prev: null, next: null };
    entry.prev = last;
    last.next = entry;
    last = entry;
  }
  return head;
}

/** Removes a call event and its return event from the list. */
function unlink(call: Entry): void {
  call.prev!.next = call.next;
  // A call event always has a later event (at least its own return).
  call.next!.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

/** Undoes `unlink` (in reverse order, which restores the exact links). */
function relink(call: Entry): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  call.next!.prev = call;
}

/**
 * The set of linearized operations, with a 64-bit Zobrist hash of it (two 32-bit halves, each
 * an XOR of per-operation random words) kept up to date in O(1) per change.
 */
class Bitset {
  readonly words: Uint32Array;
  h1 = 0;
  h2 = 0;
  constructor(private readonly zobrist: Zobrist) {
    this.words = new Uint32Array(Math.ceil(zobrist.size / 32));
  }
  set(i: number): void {
    this.words[i >>> 5]! |= 1 << (i & 31);
    this.toggle(i);
  }
  clear(i: number): void {
    this.words[i >>> 5]! &= ~(1 << (i & 31));
    this.toggle(i);
  }
  private toggle(i: number): void {
    this.h1 = (this.h1 ^ this.zobrist.z1[i]!) >>> 0;
    this.h2 = (this.h2 ^ this.zobrist.z2[i]!) >>> 0;
  }
}

/** Random words per operation, from a fixed seed so runs are reproducible. */
class Zobrist {
  readonly z1: Uint32Array;
  readonly z2: Uint32Array;
  constructor(readonly size: number) {
    this.z1 = new Uint32Array(size);
    this.z2 = new Uint32Array(size);
    let seed = 0x2545f491;
    const next = (): number => {
      // splitmix32
      seed = (seed + 0x9e3779b9) >>> 0;
      let z = seed;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    for (let i = 0; i < size; i++) {
      this.z1[i] = next();
      this.z2[i] = next();
    }
  }
}

/**
 * The visited configurations: (set of linearized operations, state key), bucketed by the
 * set's hash and the state key. Sets are compared exactly within a bucket, so a hash
 * collision costs time, never a wrong answer.
 */
class ConfigCache {
  private readonly buckets = new Map<string, Uint32Array[]>();
  constructor(private readonly zobrist: Zobrist) {}

  /** Adds the configuration (`bits` plus `op`, `key`); false if it was there already. */
  add(bits: Bitset, op: number, key: string): boolean {
    const h1 = (bits.h1 ^ this.zobrist.z1[op]!) >>> 0;
    const h2 = (bits.h2 ^ this.zobrist.z2[op]!) >>> 0;
    const bucketKey = `${h1.toString(36)}.${h2.toString(36)}.${key}`;
    const word = op >>> 5;
    const mask = 1 << (op & 31);
    const bucket = this.buckets.get(bucketKey);
    if (bucket) {
      for (const seen of bucket) if (equalWith(seen, bits.words, word, mask)) return false;
    }
    const copy = bits.words.slice();
    copy[word]! |= mask;
    if (bucket) bucket.push(copy);
    else this.buckets.set(bucketKey, [copy]);
    return true;
  }
}

/** Whether `a` equals `b` with `mask` set in word `word`. */
function equalWith(a: Uint32Array, b: Uint32Array, word: number, mask: number): boolean {
  for (let i = 0; i < a.length; i++) {
    const w = i === word ? (b[i]! | mask) >>> 0 : b[i]!;
    if (a[i] !== w) return false;
  }
  return true;
}
