/**
 * Concurrent histories with real-time bounds, for the linearizability checker.
 *
 * An operation is invoked at `call` and completes at `ret` (both `performance.now()` times of
 * the test process, so every recorder in one process shares a clock). Its outcome is one of:
 * - 'ok' / 'fail': a definite answer; `output` says what it was (a failure is an output too:
 *   a refusal such as `{ error: 'lock-timeout' }` is information the model checks);
 * - 'unknown': indeterminate (UnavailableError, a timeout, a crash): the operation may or may
 *   not have taken effect, at any time after its call. As in Porcupine it is recorded with
 *   `ret = Infinity` and no output, so the checker may linearize it anywhere after its call.
 *
 * Histories are plain data: `historyToJSON` / `historyFromJSON` round-trip them (Infinity is
 * written as null), and `saveHistory` writes one to a file so a failing test can print a
 * path to it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type ProcessId = string | number;
export type Outcome = 'ok' | 'fail' | 'unknown';

/** One completed (or abandoned) operation of a history. */
export interface Operation<I = unknown, O = unknown> {
  /** Unique within its history; the order of invocation when recorded. */
  readonly id: number;
  /** Who invoked it. The checker orders only by real time; this is for reading histories. */
  readonly process: ProcessId;
  readonly input: I;
  /** The answer; `undefined` exactly when `outcome` is 'unknown'. */
  readonly output: O | undefined;
  readonly outcome: Outcome;
  /** Invocation time (finite). */
  readonly call: number;
  /** Completion time, `>= call`; `Infinity` for an indeterminate operation. */
  readonly ret: number;
}

/** An operation as written by hand or loaded from JSON, before it gets its id. */
export interface OperationSpec<I = unknown, O = unknown> {
  process: ProcessId;
  input: I;
  output?: O | undefined;
  /** Defaults to 'unknown' when `ret` is Infinity or missing, else 'ok'. */
  outcome?: Outcome;
  call: number;
  /** Defaults to Infinity (indeterminate). */
  ret?: number;
}

/** The handle `HistoryRecorder.invoke` returns: complete it exactly once. */
export interface PendingOperation<I, O> {
  readonly id: number;
  /** A definite success with this output. */
  ok(output: O): Operation<I, O>;
  /** A definite failure (a refusal that changed nothing, as the model defines it). */
  fail(output: O): Operation<I, O>;
  /** Indeterminate: may or may not have taken effect (ret = Infinity). */
  unknown(): Operation<I, O>;
}

/**
 * Records operations as a test runs them. Safe to share between concurrent async tasks (it
 * only appends). Operations never completed are reported as 'unknown' by `history()`: a test
 * that stopped waiting for an answer does not know whether the operation took effect.
 */
export class HistoryRecorder<I = unknown, O = unknown> {
  private readonly entries: { op: Operation<I, O> | null; process: ProcessId; input: I; call: number }[] = [];

  constructor(private readonly clock: () => number = () => performance.now()) {}

  /**
   * Records the invocation of `input` by `process`, now (or at `options.at`, for an event
   * whose time is known rather than observed, like a lease deadline).
   */
  invoke(process: ProcessId, input: I, options: { at?: number } = {}): PendingOperation<I, O> {
    const id = this.entries.length;
    const call = options.at ?? this.clock();
    const entry: (typeof this.entries)[number] = { op: null, process, input, call };
    this.entries.push(entry);
    const complete = (outcome: Outcome, output: O | undefined): Operation<I, O> => {
      if (entry.op) throw new Error(`operation ${id} (${String(process)}) was already completed as ${entry.op.outcome}`);
      // A clock read after `at` could precede a future `at`; the op cannot end before it began.
      const ret = outcome === 'unknown' ? Infinity : Math.max(call, this.clock());
      entry.op = { id, process, input, output, outcome, call, ret };
      return entry.op;
    };
    return {
      id,
      ok: (output) => complete('ok', output),
      fail: (output) => complete('fail', output),
      unknown: () => complete('unknown', undefined),
    };
  }

  /** Adds an operation whose times are already known (a hand-written or imported one). */
  record(spec: OperationSpec<I, O>): Operation<I, O> {
    const op = fromSpec(this.entries.length, spec);
    this.entries.push({ op, process: op.process, input: op.input, call: op.call });
    return op;
  }

  /** Every operation so far, by id; those not completed yet are reported as unknown. */
  history(): Operation<I, O>[] {
    return this.entries.map(
      (e, id) => e.op ?? { id, process: e.process, input: e.input, output: undefined, outcome: 'unknown', call: e.call, ret: Infinity },
    );
  }

  get size(): number {
    return this.entries.length;
  }
}

/** Builds a history from specs (ids in order), e.g. for hand-written test histories. */
export function makeHistory<I, O>(specs: readonly OperationSpec<I, O>[]): Operation<I, O>[] {
  return specs.map((s, id) => fromSpec(id, s));
}

function fromSpec<I, O>(id: number, s: OperationSpec<I, O>): Operation<I, O> {
  const ret = s.ret ?? Infinity;
  const outcome: Outcome = s.outcome ?? (ret === Infinity ? 'unknown' : 'ok');
  if (!Number.isFinite(s.call)) throw new RangeError(`operation ${id}: call must be finite, got ${s.call}`);
  if (!(ret >= s.call)) throw new RangeError(`operation ${id}: ret ${ret} is before call ${s.call}`);
  if (outcome === 'unknown' && ret !== Infinity) throw new RangeError(`operation ${id}: an unknown outcome must have ret = Infinity`);
  if (outcome !== 'unknown' && ret === Infinity) throw new RangeError(`operation ${id}: a definite outcome needs a finite ret`);
  return { id, process: s.process, input: s.input, output: outcome === 'unknown' ? undefined : s.output, outcome, call: s.call, ret };
}

const FORMAT = 'capsync-history';

interface HistoryFile {
  format: typeof FORMAT;
  version: 1;
  ops: { id: number; process: ProcessId; input: unknown; output?: unknown; outcome: Outcome; call: number; ret: number | null }[];
}

/** Serializes a history; `ret = Infinity` becomes `null` (JSON has no Infinity). */
export function historyToJSON(ops: readonly Operation[], space?: number): string {
  const file: HistoryFile = {
    format: FORMAT,
    version: 1,
    ops: ops.map((o) => ({
      id: o.id,
      process: o.process,
      input: o.input,
      ...(o.outcome === 'unknown' ? {} : { output: o.output }),
      outcome: o.outcome,
      call: o.call,
      ret: o.ret === Infinity ? null : o.ret,
    })),
  };
  return JSON.stringify(file, null, space);
}

/** Parses what `historyToJSON` wrote (the caller asserts the input and output types). */
export function historyFromJSON<I = unknown, O = unknown>(text: string): Operation<I, O>[] {
  const file = JSON.parse(text) as Partial<HistoryFile>;
  if (file.format !== FORMAT || file.version !== 1 || !Array.isArray(file.ops)) throw new Error(`not a ${FORMAT} v1 file`);
  return file.ops.map((o) => {
    const op = fromSpec<I, O>(o.id, {
      process: o.process,
      input: o.input as I,
      output: o.output as O | undefined,
      outcome: o.outcome,
      call: o.call,
      ret: o.ret === null ? Infinity : o.ret,
    });
    return op;
  });
}

/**
 * Writes a history as JSON to `dir` (default: $CAPSYNC_HISTORY_DIR, else the OS temp dir's
 * capsync-histories/) and returns the file's path, for a failing test to print.
 */
export function saveHistory(ops: readonly Operation[], label: string, dir?: string): string {
  const where = dir ?? process.env['CAPSYNC_HISTORY_DIR'] ?? path.join(os.tmpdir(), 'capsync-histories');
  mkdirSync(where, { recursive: true });
  const safe = label.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 80);
  const file = path.join(where, `${safe}-${Date.now()}-${process.pid}.json`);
  writeFileSync(file, historyToJSON(ops, 1));
  return file;
}

/** Reads a history `saveHistory` wrote. */
export function loadHistory<I = unknown, O = unknown>(file: string): Operation<I, O>[] {
  return historyFromJSON<I, O>(readFileSync(file, 'utf8'));
}
