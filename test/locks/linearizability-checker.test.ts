/**
 * The linearizability checker and the lock + fenced register model, on their own: a checker
 * that never fails proves nothing, so every rule is shown both ways. Hand-written histories
 * for each shape of violation; random legal histories from a sequential simulation (must
 * pass) and their mutations (must fail when the mutation makes them illegal, which a
 * brute-force checker decides for small ones); and a 2,000-operation history for speed.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { SeededRandom, testSeed } from '../support/seeded-random.js';
import {
  assertLinearizable,
  checkLinearizable,
  historyFromJSON,
  historyToJSON,
  HistoryRecorder,
  loadHistory,
  lockModel,
  makeHistory,
  saveHistory,
  type LockInput,
  type LockOperation,
  type LockOutput,
  type LockState,
  type Model,
  type OperationSpec,
} from '../support/linearizability/index.js';

type Spec = OperationSpec<LockInput, LockOutput>;

const model = lockModel();
/** The same model without the inert-operation shortcut: plain WGL + memoization. */
const plainModel: Model<LockState, LockInput, LockOutput> = { ...model, inert: undefined };

// Hand-written histories: one key unless said otherwise; times are arbitrary units.
const acquire = (key = 'k'): LockInput => ({ kind: 'acquire', key });
const release = (token: number, key = 'k'): LockInput => ({ kind: 'release', key, token });
const renew = (token: number, key = 'k'): LockInput => ({ kind: 'renew', key, token });
const lost = (token: number, key = 'k'): LockInput => ({ kind: 'lost', key, token });
const write = (token: number, value: unknown, key = 'k'): LockInput => ({ kind: 'write', key, token, value });
const read = (key = 'k'): LockInput => ({ kind: 'read', key });

/** A definite op (fail if the output is a refusal), or '?' for an indeterminate one (ret = ∞). */
function op(process: string, input: LockInput, output: LockOutput | '?', call: number, ret?: number): Spec {
  if (output === '?') return { process, input, outcome: 'unknown', call, ret: Infinity };
  if (ret === undefined) throw new Error('a definite op needs ret');
  return { process, input, output, outcome: 'error' in output ? 'fail' : 'ok', call, ret };
}
/** A lease's deadline passing at `deadline`: the lease ends some time after it. */
const lapse = (process: string, token: number, deadline: number, key = 'k'): Spec => op(process, lost(token, key), '?', deadline);

const OK = {};
const refused = (error: string): LockOutput => ({ error });

function check(specs: Spec[], m: Model<LockState, LockInput, LockOutput> = model) {
  const ops = makeHistory(specs);
  const a = checkLinearizable(m, ops, { timeoutMs: 10_000 });
  // Both search variants must agree on every hand-written history.
  const b = checkLinearizable(m === model ? plainModel : m, ops, { timeoutMs: 10_000 });
  expect(b.ok).toBe(a.ok);
  return a;
}
const legal = (specs: Spec[], m?: Model<LockState, LockInput, LockOutput>) => expect(check(specs, m)).toEqual({ ok: true });
function illegal(specs: Spec[], m?: Model<LockState, LockInput, LockOutput>): string {
  const r = check(specs, m);
  expect(r.ok).toBe(false);
  return r.ok === false ? r.reason : '';
}

describe('linearizability checker: hand-written lock histories', () => {
  it('accepts a sequential acquire / write / read / release / acquire run', () => {
    legal([
      op('a', acquire(), { token: 1 }, 0, 1),
      op('a', write(1, 'x'), OK, 2, 3),
      op('a', read(), { value: 'x', token: 1 }, 4, 5),
      op('a', renew(1), OK, 5, 6),
      op('a', release(1), OK, 6, 7),
      op('b', acquire(), { token: 2 }, 8, 9),
      op('b', write(2, { n: 1, m: [2] }), OK, 10, 11),
      // Key order in the value does not matter.
      op('c', read(), { value: { m: [2], n: 1 }, token: 2 }, 12, 13),
    ]);
  });

  describe('mutual exclusion', () => {
    const both = [op('a', acquire(), { token: 1 }, 0, 1), op('b', acquire(), { token: 2 }, 2, 3)];

    it('rejects two holders with neither a release nor a lapse between', () => {
      expect(illegal(both)).toMatch(/acquire\(k\) → \{"token":2\}/);
    });
    it('accepts them when the first was released, or its deadline passed, before the second was granted', () => {
      legal([...both, op('a', release(1), OK, 1.2, 1.8)]);
      legal([...both, lapse('a', 1, 1.5)]);
      // A release still running when the second grant returns: it took effect first.
      legal([both[0]!, op('b', acquire(), { token: 2 }, 2, 3), op('a', release(1), OK, 2.5, 4)]);
    });
    it('counts operations that touch at one instant as concurrent (the lenient reading of a tie)', () => {
      legal([...both, op('a', release(1), OK, 3, 4)]);
      legal([...both, lapse('a', 1, 3)]);
    });
    it('rejects a grant that returned before the previous lease could have ended', () => {
      // The deadline (4) is after B's grant returned (3): the authority granted early.
      illegal([...both, lapse('a', 1, 4)]);
      // The release was invoked only after B's grant returned.
      illegal([...both, op('a', release(1), OK, 3.5, 4)]);
    });
    it('a release after the lease lapsed: ok only if nobody took the lock, lease-lost always', () => {
      const held = [op('a', acquire(), { token: 1 }, 0, 1), lapse('a', 1, 2)];
      // The authority may not have expired it yet: the release ended it.
      legal([...held, op('a', release(1), OK, 3, 4)]);
      legal([...held, op('a', release(1), refused('lease-lost'), 3, 4)]);
      illegal([...held, op('b', acquire(), { token: 2 }, 2.5, 3), op('a', release(1), OK, 3.5, 4)]);
      legal([...held, op('b', acquire(), { token: 2 }, 2.5, 3), op('a', release(1), refused('lease-lost'), 3.5, 4)]);
    });
    it('rejects lease-lost for a lease that was current, and a renew of one that was not', () => {
      illegal([op('a', acquire(), { token: 1 }, 0, 1), op('a', release(1), refused('lease-lost'), 2, 3)]);
      illegal([op('a', acquire(), { token: 1 }, 0, 1), op('a', renew(1), refused('lease-lost'), 2, 3)]);
      illegal([op('a', acquire(), { token: 1 }, 0, 1), op('a', release(1), OK, 2, 3), op('a', renew(1), OK, 4, 5)]);
    });
  });

  describe('token order', () => {
    it('rejects a token that goes down, or repeats', () => {
      const first = [op('a', acquire(), { token: 5 }, 0, 1), op('a', release(5), OK, 2, 3)];
      legal([...first, op('b', acquire(), { token: 9 }, 4, 5)]);
      illegal([...first, op('b', acquire(), { token: 3 }, 4, 5)]);
      illegal([...first, op('b', acquire(), { token: 5 }, 4, 5)]);
    });
    it('concurrent acquires: only the orders with the lower token first are legal', () => {
      // Overlapping grants 1 and 2 with a release of 1 between them: legal.
      legal([op('a', acquire(), { token: 1 }, 0, 5), op('b', acquire(), { token: 2 }, 1, 20), op('a', release(1), OK, 6, 8)]);
      // B's grant (2) returned at 7, inside the release's window: still legal.
      legal([op('a', acquire(), { token: 1 }, 0, 5), op('b', acquire(), { token: 2 }, 1, 7), op('a', release(1), OK, 6, 8)]);
      // B's grant returned before the release was invoked: the lock was held twice.
      illegal([op('a', acquire(), { token: 1 }, 0, 5), op('b', acquire(), { token: 2 }, 1, 5.5), op('a', release(1), OK, 6, 8)]);
      // Token 2 granted (and released) strictly before token 1: the token went down.
      illegal([op('b', acquire(), { token: 2 }, 0, 1), op('b', release(2), OK, 1, 2), op('a', acquire(), { token: 1 }, 3, 4)]);
    });
  });

  describe('fencing', () => {
    // A holds 1, writes, is paused past its deadline; B gets 2 and writes; A wakes and writes.
    const controlRun = (late: LockOutput): Spec[] => [
      op('a', acquire(), { token: 1 }, 0, 1),
      op('a', write(1, 'a'), OK, 1, 2),
      lapse('a', 1, 3),
      op('b', acquire(), { token: 2 }, 4, 5),
      op('b', write(2, 'b'), OK, 6, 7),
      op('a', write(1, 'a-late'), late, 8, 9),
    ];

    it('rejects the unfenced control run: an old holder`s write accepted after a newer holder`s', () => {
      expect(illegal(controlRun(OK))).toMatch(/write\(k, token 1, "a-late"\)/);
    });
    it('accepts the fenced run: the late write refused as stale', () => {
      legal([...controlRun(refused('stale-token')), op('c', read(), { value: 'b', token: 2 }, 10, 11)]);
    });
    it('accepts a paused holder`s late write while no newer token has written (fencing allows it)', () => {
      legal([
        op('a', acquire(), { token: 1 }, 0, 1),
        lapse('a', 1, 2),
        op('b', acquire(), { token: 2 }, 3, 4),
        op('a', write(1, 'a-late'), OK, 5, 6),
        op('b', write(2, 'b'), OK, 7, 8),
        op('c', read(), { value: 'b', token: 2 }, 9, 10),
      ]);
    });
    it('rejects a write with a token never granted', () => {
      illegal([op('a', acquire(), { token: 1 }, 0, 1), op('a', write(2, 'x'), OK, 2, 3)]);
    });
    it('rejects a stale-token refusal that was not stale, and accepts one racing a newer write', () => {
      const granted = [
        op('a', acquire(), { token: 1 }, 0, 1),
        op('a', write(1, 'a'), OK, 1, 2),
        lapse('a', 1, 2),
        op('b', acquire(), { token: 2 }, 3, 4),
      ];
      illegal([...granted, op('a', write(1, 'late'), refused('stale-token'), 5, 6)]);
      // Same token as the highest written is not stale either.
      illegal([op('a', acquire(), { token: 1 }, 0, 1), op('a', write(1, 'a'), OK, 1, 2), op('a', write(1, 'b'), refused('stale-token'), 3, 4)]);
      // The refusal overlaps B's write of 2: it may have come after it.
      legal([...granted, op('b', write(2, 'b'), OK, 5, 7), op('a', write(1, 'late'), refused('stale-token'), 6, 8)]);
      // The refusal returned before B's write began.
      illegal([...granted, op('a', write(1, 'late'), refused('stale-token'), 5, 6), op('b', write(2, 'b'), OK, 7, 8)]);
    });
    it("with fence 'relay', a refusal is justified by a newer grant alone (the relay checks the lock authority)", () => {
      const h = [
        op('a', acquire(), { token: 1 }, 0, 1),
        lapse('a', 1, 2),
        op('b', acquire(), { token: 2 }, 3, 4),
        op('a', write(1, 'late'), refused('stale-token'), 5, 6),
      ];
      illegal(h);
      legal(h, lockModel({ fence: 'relay' }));
      illegal([op('a', acquire(), { token: 1 }, 0, 1), op('a', write(1, 'x'), refused('stale-token'), 2, 3)], lockModel({ fence: 'relay' }));
    });

    it("with fence 'relay', an indeterminate acquire may have been granted a token no one saw (found by a nemesis run)", () => {
      const relay = lockModel({ fence: 'relay' });
      const base = [op('a', acquire(), { token: 1 }, 0, 1), lapse('a', 1, 2)];
      // b's acquire timed out, but the authority granted it token 2: a's write is stale.
      legal([...base, op('b', acquire(), '?', 3), op('a', write(1, 'late'), refused('stale-token'), 5, 6)], relay);
      // Without that indeterminate acquire, nothing newer exists: the refusal would be a lie.
      illegal([...base, op('a', write(1, 'late'), refused('stale-token'), 5, 6)], relay);
      // A hidden grant needs the lock free: not while a's lease may still be live.
      illegal([op('a', acquire(), { token: 1 }, 0, 1), op('b', acquire(), '?', 2), op('a', write(1, 'x'), refused('stale-token'), 3, 4)], relay);
      // A later known grant is above the hidden one: it does not make older tokens stale by itself.
      legal([...base, op('b', acquire(), '?', 3), op('c', acquire(), { token: 3 }, 4, 5), op('c', write(3, 'ok'), OK, 6, 7)], relay);
    });
  });

  describe('the register', () => {
    const written = [op('a', acquire(), { token: 1 }, 0, 1), op('a', write(1, 'x'), OK, 2, 3)];
    it('reads the initial value as null / token 0', () => {
      legal([op('c', read(), { value: null, token: 0 }, 0, 1), ...written]);
      illegal([...written, op('c', read(), { value: null, token: 0 }, 4, 5)]);
    });
    it('rejects a read of a value never written, or with the wrong token', () => {
      illegal([...written, op('c', read(), { value: 'y', token: 1 }, 4, 5)]);
      illegal([...written, op('c', read(), { value: 'x', token: 2 }, 4, 5)]);
    });
    it('overlapping writes: a read after both sees the higher token; a read during them may see either', () => {
      const writes = [
        op('a', acquire(), { token: 1 }, 0, 1),
        lapse('a', 1, 1),
        op('b', acquire(), { token: 2 }, 2, 3),
        op('a', write(1, 'x'), OK, 4, 8),
        op('b', write(2, 'y'), OK, 5, 7),
      ];
      legal([...writes, op('c', read(), { value: 'y', token: 2 }, 9, 10)]);
      illegal([...writes, op('c', read(), { value: 'x', token: 1 }, 9, 10)]);
      legal([...writes, op('c', read(), { value: 'x', token: 1 }, 6, 10)]);
      // Once a read saw y, a later read cannot see x again.
      illegal([...writes, op('c', read(), { value: 'y', token: 2 }, 6, 7.5), op('d', read(), { value: 'x', token: 1 }, 7.6, 10)]);
    });
  });

  describe('indeterminate (ret = ∞) operations', () => {
    const base = [op('a', acquire(), { token: 1 }, 0, 1), op('a', write(1, 'x'), OK, 1, 2), lapse('a', 1, 2), op('b', acquire(), { token: 2 }, 3, 4)];
    it('an unknown write may or may not have taken effect, but not before its call nor undone', () => {
      const w = op('b', write(2, 'y'), '?', 5);
      legal([...base, w, op('c', read(), { value: 'y', token: 2 }, 6, 7)]);
      legal([...base, w, op('c', read(), { value: 'x', token: 1 }, 6, 7)]);
      legal([...base, w, op('c', read(), { value: 'x', token: 1 }, 6, 7), op('c', read(), { value: 'y', token: 2 }, 8, 9)]);
      illegal([...base, w, op('c', read(), { value: 'y', token: 2 }, 6, 7), op('c', read(), { value: 'x', token: 1 }, 8, 9)]);
      // The read returned before the write was invoked.
      illegal([...base, op('c', read(), { value: 'y', token: 2 }, 4.5, 4.8), w]);
    });
    it('an unknown acquire does not hold the lock, but cannot excuse a token going down', () => {
      legal([op('a', acquire(), '?', 0), op('b', acquire(), { token: 1 }, 1, 2), op('c', acquire(), '?', 3)]);
      illegal([op('a', acquire(), { token: 4 }, 0, 1), op('a', release(4), OK, 1, 2), op('b', acquire(), '?', 3), op('c', acquire(), { token: 3 }, 4, 5)]);
    });
    it('an unknown release may have ended the lease, but not before it was invoked', () => {
      legal([op('a', acquire(), { token: 1 }, 0, 1), op('a', release(1), '?', 2), op('b', acquire(), { token: 2 }, 3, 4)]);
      illegal([op('a', acquire(), { token: 1 }, 0, 1), op('b', acquire(), { token: 2 }, 2, 3), op('a', release(1), '?', 4)]);
    });
    it('an unknown op anywhere cannot rescue an illegal definite history', () => {
      illegal([
        op('a', acquire(), { token: 1 }, 0, 1),
        op('x', write(1, 'q'), '?', 0.5),
        op('x', release(1), '?', 0.5),
        op('b', read(), { value: 'z', token: 1 }, 2, 3),
      ]);
    });
  });

  it('checks keys independently (P-compositionality)', () => {
    legal([op('a', acquire('k1'), { token: 1 }, 0, 1), op('b', acquire('k2'), { token: 1 }, 0.5, 1.5), op('a', write(1, 'x', 'k1'), OK, 2, 3), op('b', read('k2'), { value: null, token: 0 }, 2, 3)]);
    const r = check([op('a', acquire('k1'), { token: 1 }, 0, 1), op('b', acquire('k2'), { token: 1 }, 0, 1), op('c', acquire('k2'), { token: 2 }, 2, 3)]);
    expect(r.ok).toBe(false);
    if (r.ok === false) expect(r.longestPrefix.every((o) => o.input.key === 'k2')).toBe(true);
  });

  it('a failure names the blocked operation and the longest legal prefix', () => {
    const r = check([
      op('a', acquire(), { token: 1 }, 0, 1),
      op('a', write(1, 'a'), OK, 1, 2),
      op('b', acquire(), { token: 2 }, 3, 4),
    ]);
    if (r.ok !== false) throw new Error('expected a failure');
    expect(r.blocked?.input).toEqual(acquire());
    expect(r.longestPrefix.map((o) => o.input.kind)).toEqual(['acquire', 'write']);
    expect(r.reason).toContain('holder=1');
  });

  it("answers 'timeout' when out of time", () => {
    expect(checkLinearizable(model, makeHistory([op('a', acquire(), { token: 1 }, 0, 1)]), { timeoutMs: -1 })).toEqual({ ok: 'timeout' });
  });
});

describe('history recording and files', () => {
  it('records with real-time bounds, marks uncompleted ops unknown, and round-trips through JSON', () => {
    let now = 0;
    const rec = new HistoryRecorder<LockInput, LockOutput>(() => now);
    const a = rec.invoke('a', acquire());
    now = 1;
    const b = rec.invoke('b', acquire());
    now = 2;
    a.ok({ token: 1 });
    expect(() => a.fail({ error: 'x' })).toThrow(/already completed/);
    b.fail({ error: 'lock-timeout' });
    rec.invoke('a', write(1, 'x'), { at: 1.5 }).unknown();
    rec.invoke('c', read()); // never completed
    rec.record(lapse('a', 1, 5));
    const ops = rec.history();
    expect(ops.map((o) => [o.id, o.outcome, o.call, o.ret])).toEqual([
      [0, 'ok', 0, 2],
      [1, 'fail', 1, 2],
      [2, 'unknown', 1.5, Infinity],
      [3, 'unknown', 2, Infinity],
      [4, 'unknown', 5, Infinity],
    ]);
    expect(historyFromJSON(historyToJSON(ops))).toEqual(ops);
    const file = saveHistory(ops, 'round trip');
    expect(loadHistory(file)).toEqual(ops);
    expect(checkLinearizable(model, loadHistory<LockInput, LockOutput>(file))).toEqual({ ok: true });
  });

  it('assertLinearizable throws with the reason and the path of the saved history', () => {
    const ops = makeHistory([op('a', acquire(), { token: 2 }, 0, 1), op('a', release(2), OK, 1, 2), op('b', acquire(), { token: 1 }, 3, 4)]);
    let message = '';
    try {
      assertLinearizable(model, ops, { label: 'token down', timeoutMs: 5_000 });
    } catch (err) {
      message = (err as Error).message;
    }
    const file = /History: (.+\.json)/.exec(message)?.[1];
    expect(message).toContain('not linearizable');
    expect(file).toBeDefined();
    expect(historyFromJSON(readFileSync(file!, 'utf8'))).toEqual(ops);
  });
});

// ---------------------------------------------------------------------------------------
// Random histories: a sequential simulation of the lock authority and a fenced register,
// every operation taking effect at a point inside its [call, ret] window.

interface SimOptions {
  processes: number;
  ops: number;
  /** How far an operation's window stretches on each side of its effect (max). */
  stretch: number;
  /** Fraction of operations whose outcome is unknown (and which take effect half the time). */
  unknownRate: number;
}

/** A legal history by construction: effects applied in order at increasing times. */
function simulate(rng: SeededRandom, o: SimOptions): LockOperation[] {
  const key = 'k';
  const srv = { holder: null as number | null, lastGranted: 0, highestWritten: 0, value: null as unknown };
  const held = new Map<number, number>(); // process → token it holds
  const stale = new Map<number, number>(); // process → token of a lease it lost while paused
  const free = new Array<number>(o.processes).fill(0); // when each process is idle again
  const specs: Spec[] = [];
  let t = 0;
  let values = 0;
  const lapseAt = (p: number, token: number): void => {
    srv.holder = null;
    specs.push(lapse(`p${p}`, token, t - rng.next() * 0.5, key));
  };

  while (specs.length < o.ops) {
    t += 0.05 + rng.next();
    const idle = [...free.keys()].filter((p) => free[p]! < t);
    if (idle.length === 0) {
      t = Math.min(...free);
      continue;
    }
    const p = rng.pick(idle);
    const unknown = rng.next() < o.unknownRate;
    const applied = !unknown || rng.next() < 0.5;
    const call = t - rng.next() * Math.min(o.stretch, t - free[p]!);
    const ret = t + rng.next() * o.stretch;
    const wasFree = free[p]!;
    // A caller that timed out moves on; the op's effect (if any) happened at t.
    free[p] = unknown ? t + rng.next() * o.stretch : ret;
    const emit = (input: LockInput, output: LockOutput): void => {
      specs.push(unknown ? op(`p${p}`, input, '?', call) : op(`p${p}`, input, output, call, ret));
    };
    const readNow = (): void => emit(read(key), { value: srv.value, token: srv.highestWritten });
    const writeNow = (token: number): void => {
      const value = `v${values++}`;
      if (token >= srv.highestWritten) {
        if (applied) Object.assign(srv, { highestWritten: token, value });
        emit(write(token, value, key), OK);
      } else emit(write(token, value, key), refused('stale-token'));
    };

    const mine = held.get(p);
    const old = stale.get(p);
    const r = rng.next();
    if (mine !== undefined) {
      if (r < 0.4) writeNow(mine);
      else if (r < 0.5) readNow();
      else if (r < 0.55) emit(renew(mine, key), OK);
      else if (r < 0.85) {
        held.delete(p);
        if (applied) srv.holder = null;
        emit(release(mine, key), OK);
        if (!applied) lapseAt(p, mine); // an unanswered release that did not arrive: the lease runs out
      } else {
        // Paused past the deadline: the lease ends; the process may wake and use the token.
        held.delete(p);
        stale.set(p, mine);
        free[p] = wasFree; // not an operation of the process: it stays idle
        lapseAt(p, mine);
      }
    } else if (old !== undefined && r < 0.5) {
      stale.delete(p);
      if (rng.next() < 0.7) writeNow(old);
      else emit(release(old, key), refused('lease-lost'));
    } else if (r < 0.6) {
      if (srv.holder !== null) emit(acquire(key), refused('lock-timeout'));
      else {
        const token = srv.lastGranted + rng.int(1, 3);
        srv.lastGranted = token;
        // An unanswered grant lapses at once, as the model assumes.
        if (!unknown) {
          srv.holder = token;
          held.set(p, token);
        }
        emit(acquire(key), { token });
      }
    } else readNow();
  }
  return makeHistory(specs);
}

const tokenOf = (o: LockOperation): number => ('token' in o.input ? o.input.token : o.output && 'token' in o.output ? o.output.token : 0);
const is = (o: LockOperation, kind: LockInput['kind'], outcome: LockOperation['outcome']): boolean => o.input.kind === kind && o.outcome === outcome;
const replace = (ops: LockOperation[], changed: LockOperation): LockOperation[] => ops.map((o) => (o.id === changed.id ? changed : o));
const withToken = (o: LockOperation, token: number): LockOperation => ({ ...o, input: { ...o.input, token } as LockInput });
const granted = (o: LockOperation, token: number): LockOperation => ({ ...o, outcome: 'ok', output: { token } });

/** A mutation that makes any history it applies to illegal; null if none applies. */
interface Mutation {
  name: string;
  apply(ops: LockOperation[], rng: SeededRandom): LockOperation[] | null;
}

/** Picks one of the pairs (a, b) with `a` before `b` in real time and `fits(a, b)`. */
function pickOrderedPair(rng: SeededRandom, as: LockOperation[], bs: LockOperation[], fits: (a: LockOperation, b: LockOperation) => boolean) {
  const pairs: [LockOperation, LockOperation][] = [];
  for (const a of as) for (const b of bs) if (a.ret < b.call && fits(a, b)) pairs.push([a, b]);
  return pairs.length ? rng.pick(pairs) : null;
}

const ILLEGAL_MUTATIONS: Mutation[] = [
  {
    // The earlier write now carries the higher token: the later one lands out of order.
    name: 'swap the tokens of two writes ordered in real time',
    apply(ops, rng) {
      const writes = ops.filter((o) => is(o, 'write', 'ok'));
      const pair = pickOrderedPair(rng, writes, writes, (a, b) => tokenOf(a) < tokenOf(b));
      if (!pair) return null;
      const [a, b] = pair;
      return replace(replace(ops, withToken(a, tokenOf(b))), withToken(b, tokenOf(a)));
    },
  },
  {
    // A higher token had written before the refused write began: accepting it is unfenced.
    name: 'accept a stale-token refusal',
    apply(ops, rng) {
      const pair = pickOrderedPair(rng, ops.filter((o) => is(o, 'write', 'ok')), ops.filter((o) => is(o, 'write', 'fail') && o.output && 'error' in o.output && o.output.error === 'stale-token'), (w, x) => tokenOf(w) > tokenOf(x));
      return pair ? replace(ops, { ...pair[1], outcome: 'ok', output: OK }) : null;
    },
  },
  {
    name: 'swap the tokens of two grants ordered in real time',
    apply(ops, rng) {
      const grants = ops.filter((o) => is(o, 'acquire', 'ok'));
      const pair = pickOrderedPair(rng, grants, grants, (a, b) => tokenOf(a) < tokenOf(b));
      if (!pair) return null;
      const [a, b] = pair;
      return replace(replace(ops, granted(a, tokenOf(b))), granted(b, tokenOf(a)));
    },
  },
  {
    // The lease never ends, yet a later grant happens.
    name: 'drop a release',
    apply(ops, rng) {
      const candidates = ops.filter(
        (r) =>
          is(r, 'release', 'ok') &&
          !ops.some((o) => o.input.kind === 'lost' && tokenOf(o) === tokenOf(r)) &&
          ops.some((a) => is(a, 'acquire', 'ok') && tokenOf(a) > tokenOf(r)),
      );
      if (!candidates.length) return null;
      const r = rng.pick(candidates);
      return ops.filter((o) => o.id !== r.id);
    },
  },
  {
    // Values are unique, and the write that produced it began after the read returned.
    name: 'read a value from the future',
    apply(ops, rng) {
      const pair = pickOrderedPair(rng, ops.filter((o) => is(o, 'read', 'ok')), ops.filter((o) => o.input.kind === 'write'), () => true);
      if (!pair) return null;
      const w = pair[1].input as Extract<LockInput, { kind: 'write' }>;
      return replace(ops, { ...pair[0], output: { value: w.value, token: w.token } });
    },
  },
  {
    // A grant of a fresh, highest token before a grant that returned later with a lower one.
    name: 'turn a refused acquire into a grant of a new highest token',
    apply(ops, rng) {
      const pair = pickOrderedPair(rng, ops.filter((o) => is(o, 'acquire', 'fail')), ops.filter((o) => is(o, 'acquire', 'ok')), () => true);
      if (!pair) return null;
      const highest = Math.max(...ops.map(tokenOf));
      return replace(ops, granted(pair[0], highest + 1));
    },
  },
];

/** Any small change; whether it breaks the history is for the brute-force checker to say. */
function mutateAnyhow(ops: LockOperation[], rng: SeededRandom): LockOperation[] {
  const o = rng.pick(ops);
  const values = [null, ...ops.flatMap((w) => (w.input.kind === 'write' ? [w.input.value] : []))];
  switch (rng.int(0, 4)) {
    case 0: {
      // Flip a definite outcome.
      if (o.outcome === 'unknown') return replace(ops, { ...o, outcome: 'ok', ret: o.call + rng.next() * 5, output: o.input.kind === 'acquire' ? { token: rng.int(1, 8) } : o.input.kind === 'read' ? { value: rng.pick(values), token: rng.int(0, 6) } : OK });
      const failed = o.outcome === 'fail';
      const output: LockOutput =
        o.input.kind === 'acquire'
          ? failed
            ? { token: rng.int(1, 8) }
            : refused('lock-timeout')
          : o.input.kind === 'read'
            ? { value: rng.pick(values), token: rng.int(0, 6) }
            : failed
              ? OK
              : refused(o.input.kind === 'write' ? 'stale-token' : 'lease-lost');
      return replace(ops, { ...o, output, outcome: 'error' in output ? 'fail' : 'ok' });
    }
    case 1: {
      const d = rng.pick([-2, -1, 1, 2]);
      if ('token' in o.input) return replace(ops, withToken(o, Math.max(1, o.input.token + d)));
      if (o.output && 'token' in o.output) return replace(ops, { ...o, output: { ...o.output, token: Math.max(0, o.output.token + d) } });
      return ops;
    }
    case 2: {
      const call = Math.max(0, o.call + (rng.next() - 0.5) * 8);
      return replace(ops, { ...o, call, ret: o.ret === Infinity ? Infinity : call + rng.next() * 4 });
    }
    case 3:
      return replace(ops, { ...o, outcome: 'unknown', output: undefined, ret: Infinity });
    default:
      return ops.filter((x) => x !== o);
  }
}

/** The definition, searched exhaustively: some real-time-respecting order is a legal run. */
function bruteForce(m: Model<LockState, LockInput, LockOutput>, ops: readonly LockOperation[]): boolean {
  const used = ops.map(() => false);
  const go = (states: LockState[], done: number): boolean => {
    if (done === ops.length) return true;
    for (let i = 0; i < ops.length; i++) {
      const next = ops[i]!;
      if (used[i] || ops.some((o, j) => !used[j] && j !== i && o.ret < next.call)) continue;
      const after = new Map<string, LockState>();
      for (const s of states) for (const t of m.step(s, next.input, next.output)) after.set(m.hash(t), t);
      if (after.size === 0) continue;
      used[i] = true;
      if (go([...after.values()], done + 1)) return true;
      used[i] = false;
    }
    return false;
  };
  return go([m.init()], 0);
}

function fail(seed: number, what: string, ops: LockOperation[], detail: string): never {
  const file = saveHistory(ops, what);
  throw new Error(`seed ${seed}: ${what}: ${detail}\nHistory: ${file} (replay with SEED=${seed})`);
}

describe('linearizability checker: random histories', () => {
  const seed = testSeed('linearizability-checker');

  it('accepts legal histories from a sequential simulation with random real-time stretching', () => {
    const rng = new SeededRandom(seed);
    for (let i = 0; i < 40; i++) {
      const ops = simulate(rng, { processes: rng.int(2, 6), ops: rng.int(20, 300), stretch: 0.5 + rng.next() * 5, unknownRate: rng.next() * 0.15 });
      for (const m of [model, plainModel]) {
        const r = checkLinearizable(m, ops, { timeoutMs: 20_000 });
        if (r.ok !== true) fail(seed, `legal history ${i}`, ops, r.ok === false ? r.reason : 'timed out');
      }
    }
  });

  it('rejects every mutation that makes a legal history illegal', () => {
    const rng = new SeededRandom(seed + 1);
    const applied = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const ops = simulate(rng, { processes: rng.int(2, 6), ops: rng.int(30, 300), stretch: 0.5 + rng.next() * 4, unknownRate: rng.next() * 0.1 });
      for (const mutation of ILLEGAL_MUTATIONS) {
        const mutant = mutation.apply(ops, rng);
        if (!mutant) continue;
        applied.set(mutation.name, (applied.get(mutation.name) ?? 0) + 1);
        const r = checkLinearizable(model, mutant, { timeoutMs: 20_000 });
        if (r.ok !== false) fail(seed, `history ${i}, ${mutation.name}`, mutant, r.ok === true ? 'accepted' : 'timed out');
      }
    }
    console.log(`[linearizability-checker] mutants rejected: ${JSON.stringify(Object.fromEntries(applied))}`);
    // Every kind of mutation found somewhere to apply.
    expect([...applied.keys()].sort()).toEqual(ILLEGAL_MUTATIONS.map((m) => m.name).sort());
  });

  it('agrees with a brute-force search on small histories, mutated or not', () => {
    const rng = new SeededRandom(seed + 2);
    let legalCount = 0;
    let illegalCount = 0;
    for (let i = 0; i < 400; i++) {
      let ops = simulate(rng, { processes: rng.int(2, 4), ops: rng.int(3, 8), stretch: 0.5 + rng.next() * 3, unknownRate: 0.2 });
      const mutate = i % 5 !== 0;
      if (mutate) for (let k = rng.int(1, 2); k > 0; k--) ops = mutateAnyhow(ops, rng);
      const expected = bruteForce(model, ops);
      if (!mutate && !expected) fail(seed, `small history ${i}`, ops, 'the simulation produced an illegal history');
      for (const m of [model, plainModel]) {
        const r = checkLinearizable(m, ops, { timeoutMs: 10_000 });
        if (r.ok !== expected) fail(seed, `small history ${i}`, ops, `checker says ${String(r.ok)}, brute force says ${expected}`);
      }
      if (expected) legalCount++;
      else illegalCount++;
    }
    console.log(`[linearizability-checker] small histories: ${legalCount} legal, ${illegalCount} illegal`);
    expect(legalCount).toBeGreaterThan(50);
    expect(illegalCount).toBeGreaterThan(50);
  });

  it('checks a 2,000-operation, 6-process history, legal and mutated, without timing out', () => {
    const rng = new SeededRandom(seed + 3);
    const ops = simulate(rng, { processes: 6, ops: 2_000, stretch: 4, unknownRate: 0.05 });
    const overlap = maxConcurrency(ops);
    let started = performance.now();
    const r = checkLinearizable(model, ops, { timeoutMs: 20_000 });
    const legalMs = performance.now() - started;
    if (r.ok !== true) fail(seed, 'large legal history', ops, r.ok === false ? r.reason : 'timed out');
    started = performance.now();
    const plain = checkLinearizable(plainModel, ops, { timeoutMs: 20_000 });
    const plainMs = performance.now() - started;
    expect(plain.ok).not.toBe(false);
    const timings: string[] = [];
    for (const mutation of ILLEGAL_MUTATIONS) {
      const mutant = mutation.apply(ops, rng);
      if (!mutant) continue;
      started = performance.now();
      const m = checkLinearizable(model, mutant, { timeoutMs: 20_000 });
      timings.push(`${mutation.name}: ${(performance.now() - started).toFixed(0)} ms`);
      if (m.ok !== false) fail(seed, `large history, ${mutation.name}`, mutant, m.ok === true ? 'accepted' : 'timed out');
    }
    console.log(
      `[linearizability-checker] ${ops.length} ops, ${ops.filter((o) => o.ret === Infinity).length} indeterminate, up to ${overlap} concurrent: ` +
        `legal in ${legalMs.toFixed(0)} ms (${plainMs.toFixed(0)} ms without the inert shortcut, ${String(plain.ok)}); mutants: ${timings.join('; ')}`,
    );
  });
});

/** The most operations whose [call, ret] windows overlap one instant (∞ windows excluded). */
function maxConcurrency(ops: readonly LockOperation[]): number {
  const events = ops.filter((o) => o.ret !== Infinity).flatMap((o) => [[o.call, 1] as const, [o.ret, -1] as const]);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of events) most = Math.max(most, (now += d));
  return most;
}
