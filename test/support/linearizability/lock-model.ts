/**
 * The sequential model of capsync's CP side, per key: the lock authority's leases with
 * fencing tokens, and a fenced register (a `FencedResource`-guarded resource, or the relay's
 * fenced `cp.set` area) written under those tokens.
 *
 * Operations (input `kind`; outputs are plain data, a refusal is `{ error: code }`):
 * - `acquire {key}` → `{token}`. A refusal (`lock-timeout`, ...) grants nothing. Unknown (the
 *   client gave up): it may have been granted with a token the client never learned, which
 *   then lapses by itself (the client releases late grants at once); the model lets it change
 *   nothing (see below).
 * - `renew {key, token}` → `{}` / `{error:'lease-lost'}`: proves the lease was current / not.
 * - `release {key, token}` → `{}`: the lease with that token was current and ends now;
 *   `{error:'lease-lost'}`: it was not current. Unknown or another error: it may have ended.
 * - `lost {key, token}`: the client's lease deadline passed. Record it with `call` = that
 *   deadline (computed from the acquire's or last renew's *invocation* time plus the TTL,
 *   which is no later than the authority's expiry, not the time a timer fired) and `ret =
 *   Infinity`: the lease ends at some point after `call`, wherever the checker needs it.
 * - `write {key, token, value}` (a fenced write) → `{}`: accepted; `{error:'stale-token'}`:
 *   refused because a newer token wrote (fence 'resource'), or was granted or wrote (fence
 *   'relay': the relay also refuses a token the lock authority has superseded);
 *   `{error:'lease-lost'}` (relay only): the lease was not current. Unknown, or any other
 *   error (unavailable, storage-failure: the value may have been applied): may or may not have
 *   taken effect.
 * - `read {key}` → `{value, token}`: the register's value and the token that wrote it;
 *   `{value: null, token: 0}` when nothing was written. Refused or unknown reads are no-ops.
 *
 * State per key: `holder` (the current lease's token, or null), `lastGranted`,
 * `highestWritten` and the register's value. The rules:
 * - acquire ok{t}: holder === null and t > lastGranted; then holder = lastGranted = t;
 * - release ok{t}: holder === t; then holder = null. lost{t}: if holder === t, holder = null;
 * - write ok{t}: lastGranted >= t (the token was granted) and t >= highestWritten (the fence);
 *   then highestWritten = t, value = the written value. The writer need not hold the lease:
 *   leases are only a lower bound on how long a holder is alone; fencing is what keeps a
 *   paused old holder from overwriting a newer one;
 * - read ok: returns exactly (value, highestWritten).
 *
 * What a pass proves, for one key: there is one order of all operations, consistent with real
 * time, in which (1) at most one lease exists at a time, where a lease ends only by a release
 * or after its client's deadline: so the authority never granted a lease while another was
 * live and within its client's deadline; (2) granted tokens strictly increase; (3) the
 * register accepted only granted tokens, never one lower than a token it had accepted (no
 * write out of token order: the "unfenced" failure); (4) every stale-token refusal was
 * justified and every lease-lost answer was true; (5) reads return the latest accepted write
 * (the register is linearizable).
 *
 * What it does not prove:
 * - liveness or fairness: refusals such as lock-timeout are not checked (a refused acquire
 *   while the lock was free passes), nor FIFO order of waiters;
 * - that writes happen while their lease is live: a paused holder's late write that still
 *   carries the highest token is legal, as it is for the real system;
 * - anything about a lease whose end is not recorded: every granted lease that is not
 *   released must get a `lost` op, or later grants look like double grants (false alarms);
 *   conversely an indeterminate acquire is assumed to lapse at once (with fence 'relay' it may
 *   also have raised the bar for stale-token refusals: `LockState.hidden`), so a hidden grant that
 *   blocked others for a while is not distinguished from one that never happened (lenient;
 *   the token order still holds, since a hidden token can only raise the bar);
 * - lease durations: there is no clock in the model; `lost` only says "not before this";
 * - anything across keys (each key is checked on its own) or across incarnations of a key:
 *   a history must start with the key fresh (nothing granted, nothing written).
 */
import type { Model } from './checker.js';
import type { Operation } from './history.js';

export type LockInput =
  | { kind: 'acquire'; key: string }
  | { kind: 'renew'; key: string; token: number }
  | { kind: 'release'; key: string; token: number }
  | { kind: 'lost'; key: string; token: number }
  | { kind: 'write'; key: string; token: number; value: unknown }
  | { kind: 'read'; key: string };

/** A refusal: the capsync error code. */
export interface Refused {
  error: string;
}
/** An acquire's grant. */
export interface Granted {
  token: number;
}
/** A read: the register's value and the token that wrote it (`null`, 0 when never written). */
export interface ReadResult {
  value: unknown;
  token: number;
}
/** Success without a value (release, renew, write). */
export type Done = Record<string, never>;
export type LockOutput = Refused | Granted | ReadResult | Done;

export type LockOperation = Operation<LockInput, LockOutput>;

export interface LockState {
  /** The current lease's token, or null when no lease is live. */
  readonly holder: number | null;
  /** The highest token granted so far (0: none). */
  readonly lastGranted: number;
  /** The highest token the register accepted (0: none). */
  readonly highestWritten: number;
  /** The register's value as canonical JSON ('null' when never written). */
  readonly valueJson: string;
  /**
   * Fence 'relay' only: an indeterminate acquire may have been granted since the last known
   * grant, with a token above `lastGranted` that no one learned. The relay's fence knows it
   * (it refuses every lower token as stale), so such a refusal must not look like a lie.
   */
  readonly hidden: boolean;
}

export interface LockModelOptions {
  /**
   * What a `stale-token` refusal of a write means. 'resource' (default): a `FencedResource`,
   * which refuses only tokens lower than one it accepted. 'relay': the relay's `cp.set`, which
   * also refuses a token lower than one the lock authority granted since.
   */
  fence?: 'resource' | 'relay';
}

const INITIAL: LockState = { holder: null, lastGranted: 0, highestWritten: 0, valueJson: 'null', hidden: false };

/** The lock + fenced register model, partitioned by key. */
export function lockModel(options: LockModelOptions = {}): Model<LockState, LockInput, LockOutput> {
  const fence = options.fence ?? 'resource';
  /** The token can never be the holder again: it is not now, and no later grant can reuse it. */
  const goneForGood = (s: LockState, token: number): boolean => s.holder !== token && s.lastGranted >= token;
  const staleOk = (s: LockState, token: number): boolean =>
    fence === 'relay' ? token < s.lastGranted || (s.hidden && token <= s.lastGranted) : token < s.highestWritten;
  const applyWrite = (s: LockState, token: number, value: unknown): LockState | null =>
    s.lastGranted >= token && token >= s.highestWritten ? { ...s, highestWritten: token, valueJson: canonicalJson(value) } : null;

  return {
    init: () => INITIAL,

    step(s, input, output) {
      const refusal = output !== undefined && 'error' in output ? (output as Refused).error : null;
      switch (input.kind) {
        case 'acquire': {
          if (output === undefined) {
            // Fence 'relay': it may have been granted (a token above lastGranted that then
            // lapsed, unseen), which the relay's fence counts; it needs the lock free.
            return fence === 'relay' && s.holder === null && !s.hidden ? [s, { ...s, hidden: true }] : [s];
          }
          if (refusal !== null) return [s];
          const token = (output as Granted).token;
          return s.holder === null && token > s.lastGranted ? [{ ...s, holder: token, lastGranted: token, hidden: false }] : [];
        }
        case 'renew': {
          if (output === undefined) return [s];
          if (refusal === null) return s.holder === input.token ? [s] : [];
          if (refusal === 'lease-lost') return s.holder !== input.token ? [s] : [];
          return [s];
        }
        case 'release': {
          const ended = { ...s, holder: null };
          if (output !== undefined && refusal === null) return s.holder === input.token ? [ended] : [];
          if (refusal === 'lease-lost') return s.holder !== input.token ? [s] : [];
          return s.holder === input.token ? [s, ended] : [s];
        }
        case 'lost':
          return s.holder === input.token ? [{ ...s, holder: null }] : [s];
        case 'write': {
          if (output !== undefined && refusal === null) {
            const next = applyWrite(s, input.token, input.value);
            return next ? [next] : [];
          }
          if (refusal === 'stale-token') return staleOk(s, input.token) ? [s] : [];
          if (refusal === 'lease-lost') return s.holder !== input.token ? [s] : [];
          const next = applyWrite(s, input.token, input.value);
          return next ? [s, next] : [s];
        }
        case 'read': {
          if (output === undefined || refusal !== null) return [s];
          const r = output as ReadResult;
          return r.token === s.highestWritten && canonicalJson(r.value) === s.valueJson ? [s] : [];
        }
      }
    },

    inert(s, input, output) {
      const refusal = output !== undefined && 'error' in output ? (output as Refused).error : null;
      switch (input.kind) {
        case 'acquire':
          // An indeterminate acquire matters to the relay's fence (see LockState.hidden).
          return refusal !== null || (output === undefined && fence !== 'relay');
        case 'read':
          return output === undefined || refusal !== null;
        case 'renew':
          if (output === undefined) return true;
          return refusal !== null && (refusal !== 'lease-lost' || goneForGood(s, input.token));
        case 'lost':
          return goneForGood(s, input.token);
        case 'release':
          // ok needs the lease current: that changes state. Anything else is a no-op once the
          // token can never hold the lease again.
          return !(output !== undefined && refusal === null) && goneForGood(s, input.token);
        case 'write':
          if (output !== undefined && refusal === null) return false;
          // highestWritten and lastGranted only grow, so these stay true.
          if (refusal === 'stale-token') return staleOk(s, input.token);
          if (refusal === 'lease-lost') return goneForGood(s, input.token);
          return input.token < s.highestWritten;
      }
    },

    hash: (s) => `${s.holder ?? '-'}|${s.lastGranted}|${s.highestWritten}|${s.hidden ? 'h' : ''}|${s.valueJson}`,

    describeState: (s) =>
      `holder=${s.holder ?? 'none'} lastGranted=${s.lastGranted} highestWritten=${s.highestWritten} value=${s.valueJson}`,

    partition(ops) {
      const byKey = new Map<string, LockOperation[]>();
      for (const op of ops) {
        const list = byKey.get(op.input.key);
        if (list) list.push(op);
        else byKey.set(op.input.key, [op]);
      }
      return [...byKey.values()];
    },

    describe: describeLockOp,
  };
}

/** e.g. `#12 p3 write(sku, token 4, "a") → stale-token [10.2, 11.0]`. */
export function describeLockOp(op: LockOperation): string {
  const i = op.input;
  const args =
    i.kind === 'write' ? `${i.key}, token ${i.token}, ${JSON.stringify(i.value)}` : 'token' in i ? `${i.key}, token ${i.token}` : i.key;
  const out = op.outcome === 'unknown' ? '?' : op.output !== undefined && 'error' in op.output ? op.output.error : JSON.stringify(op.output);
  const at = (t: number): string => (t === Infinity ? '∞' : t.toFixed(3));
  return `#${op.id} ${String(op.process)} ${i.kind}(${args}) → ${out} [${at(op.call)}, ${at(op.ret)}]`;
}

/** JSON with object keys sorted (and undefined as null), so equal values compare equal. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value)) ?? 'null';
}

function sortKeys(value: unknown): unknown {
  if (value === undefined) return null;
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}
