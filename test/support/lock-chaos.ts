/**
 * A seeded nemesis run of the CP side: lock workers in their own processes, each talking to a
 * real relay through its own TCP fault proxy, take leases on a few keys and write under them
 * to two fenced resources: a `FencedResource` in this process (a user's own resource) and the
 * relay's fenced area of a document (`cp.set`). Meanwhile a nemesis, driven by the same seed,
 * partitions workers (hold, reset, drop), SIGKILLs and restarts the relay, freezes the relay or a
 * worker with SIGSTOP past the TTL, and makes workers stall between acquire and write (a GC
 * pause). Every operation is recorded with real-time bounds for the linearizability checker.
 *
 * With `relays` > 1 (relays sharing one lock authority: etcd, PostgreSQL), worker w talks to
 * relay w mod `relays`, the relay nemeses pick one relay, and each relay's workers write their
 * `cp.set`s into a document of that relay's own (`chaos-r<n>`): the relays share locks, not
 * documents (a relay does not see another's fenced writes until cluster replication delivers
 * them), so each relay's fenced area is checked as its own register (`cpHistories`), under the
 * leases of every worker.
 *
 * The history is recorded here, in the parent, around each IPC round trip, so its call/return
 * times bound the real operation from outside (what a linearizability check needs).
 */
import { FencedResource, StaleTokenError } from '@capsync/core';
import { makeHistory, type LockInput, type LockOperation, type LockOutput, type OperationSpec } from './linearizability/index.js';
import { LockWorker, type WorkerReply } from './lock-worker.js';
import { RestartableRelay } from './restartable-relay.js';
import { SeededRandom } from './seeded-random.js';
import { FaultProxy } from './fault-proxy.js';

export type ChaosInput =
  | { f: 'acquire'; key: string; ttlMs: number; waitMs: number }
  | { f: 'release'; key: string; token: number }
  | { f: 'write'; key: string; token: number; value: number; target: 'user' | 'cp' }
  | { f: 'lost'; key: string; token: number };

export type ChaosOutput = { ok: true; token?: number } | { ok: false; code: string };

/** One operation: `ret` is Infinity when its outcome is unknown (unavailable, timeout). */
export interface ChaosOp {
  process: number;
  input: ChaosInput;
  output: ChaosOutput | null;
  call: number;
  ret: number;
  /** How long it took, for the fail-fast check (Infinity-free). */
  tookMs: number;
}

export interface ChaosOptions {
  seed: number;
  /** Acquire attempts per worker. */
  opsPerWorker: number;
  workers: number;
  keys: number;
  ttlMs: number;
  lockTimeoutMs: number;
  /** Turn off the nemesis (a control run). */
  nemesis: boolean;
  /** A resource that does not check tokens: the control run the checker must catch. */
  unfenced?: boolean;
  /** Chance that a worker stalls past its TTL between acquire and write. */
  stallChance: number;
  /**
   * More faults for the nemesis to pick from (e.g. cutting the relay off from etcd, killing an
   * etcd member): `inject` starts one and resolves with the function that heals it.
   */
  extraNemeses?: { name: string; inject(rnd: SeededRandom): Promise<() => Promise<void>> }[];
  /** Extra relay CLI flags (e.g. `--etcd <urls>` for the etcd backend). */
  relayArgs?: string[];
  /** Relays (default 1); with more, each gets `relayArgs` plus its own `perRelayArgs(n)`. */
  relays?: number;
  perRelayArgs?: (relay: number) => string[];
  /**
   * Pause of a worker after an acquire answered unavailable (default 0: at once). Where the
   * authority fails fast (a database that refuses connections), the workers would otherwise use up
   * their acquires within the outage.
   */
  unavailablePauseMs?: number;
  /** waitMs values an acquire picks from. Default [0, 0, 100, 300]. */
  waitChoices?: number[];
  log?: (line: string) => void;
}

export interface ChaosResult {
  ops: ChaosOp[];
  /** For the checker: leases and writes to the user's FencedResource. */
  userHistory: LockOperation[];
  /** For the checker: leases and relay 0's fenced writes (cp.set): the one relay's by default. */
  cpHistory: LockOperation[];
  /** Per relay: every lease (the relays share them) and that relay's fenced writes. */
  cpHistories: LockOperation[][];
  nemesisEvents: string[];
  /** Operations that answered unavailable later than their deadline (+ slack). */
  slowUnavailable: ChaosOp[];
  grants: number;
}

const SLACK_MS = 250;

/** An unfenced register: accepts every write. Only for the control run. */
class UnfencedRegister {
  async write<T>(_key: string, _token: number, apply: () => T): Promise<T> {
    return apply();
  }
}

export async function runLockChaos(o: ChaosOptions): Promise<ChaosResult> {
  const rnd = new SeededRandom(o.seed);
  const log = o.log ?? (() => {});
  const relayCount = o.relays ?? 1;
  const relays: RestartableRelay[] = [];
  const proxies: FaultProxy[] = [];
  const workers: LockWorker[] = [];
  const ops: ChaosOp[] = [];
  const events: string[] = [];
  /** Per worker, when it was frozen: its own deadlines cannot fire then. */
  const frozen: [number, number][][] = Array.from({ length: o.workers }, () => []);
  const resource = o.unfenced ? new UnfencedRegister() : new FencedResource();
  let running = true;
  let grants = 0;
  /** The relay of each cp write (by its ChaosOp). */
  const relayOf = new Map<ChaosOp, number>();
  try {
    for (let r = 0; r < relayCount; r++) {
      relays.push(await RestartableRelay.start(['--lock-timeout-ms', String(o.lockTimeoutMs), ...(o.relayArgs ?? []), ...(o.perRelayArgs?.(r) ?? [])]));
    }
    for (let i = 0; i < o.workers; i++) {
      const proxy = await FaultProxy.start(Number(new URL(relays[i % relayCount]!.httpUrl).port));
      proxies.push(proxy);
      workers.push(await LockWorker.start(`ws://127.0.0.1:${proxy.port}`, o.lockTimeoutMs));
    }

    const record = async (process: number, input: ChaosInput, run: () => Promise<ChaosOutput | 'unknown'>): Promise<ChaosOutput | null> => {
      const call = performance.now();
      const out = await run();
      const ret = performance.now();
      const op: ChaosOp = { process, input, output: out === 'unknown' ? null : out, call, ret: out === 'unknown' ? Infinity : ret, tookMs: ret - call };
      ops.push(op);
      if (input.f === 'write' && input.target === 'cp') relayOf.set(op, process % relayCount);
      return op.output;
    };
    const fromReply = (r: WorkerReply): ChaosOutput | 'unknown' => {
      if (r.ok) return r.token !== undefined ? { ok: true, token: r.token } : { ok: true };
      return r.code === 'unavailable' ? 'unknown' : { ok: false, code: r.code };
    };

    let value = 0;
    const workerLoop = async (w: number): Promise<void> => {
      const worker = workers[w]!;
      const wr = new SeededRandom(o.seed * 31 + w);
      for (let i = 0; i < o.opsPerWorker && running; i++) {
        const key = `k${wr.int(0, o.keys - 1)}`;
        const waitMs = wr.pick(o.waitChoices ?? [0, 0, 100, 300]);
        const acquire = await record(w, { f: 'acquire', key, ttlMs: o.ttlMs, waitMs }, async () =>
          fromReply(await worker.call({ cmd: 'acquire', key, ttlMs: o.ttlMs, waitMs })),
        );
        if (acquire === null && o.unavailablePauseMs) {
          // As a client backs off: an outage of the authority does not use up the run at once.
          await new Promise((resolve) => setTimeout(resolve, o.unavailablePauseMs));
        }
        if (!acquire?.ok || acquire.token === undefined) continue;
        grants++;
        const token = acquire.token;
        const stalled = wr.next() < o.stallChance;
        if (stalled) {
          // A pause between deciding and writing: the lease may run out meanwhile.
          await new Promise((resolve) => setTimeout(resolve, o.ttlMs * (1.2 + wr.next())));
        }
        const v = ++value;
        await record(w, { f: 'write', key, token, value: v, target: 'user' }, async () => {
          try {
            await resource.write(key, token, () => v);
            return { ok: true };
          } catch (err) {
            if (err instanceof StaleTokenError) return { ok: false, code: 'stale-token' };
            throw err;
          }
        });
        const cv = ++value;
        await record(w, { f: 'write', key, token, value: cv, target: 'cp' }, async () =>
          // A stalled writer sends without looking at its lease again (the write was in hand
          // before the pause): only the relay's fence can stop it.
          fromReply(await worker.call({ cmd: stalled ? 'cp-set-raw' : 'cp-set', doc: relayCount > 1 ? `chaos-r${w % relayCount}` : 'chaos', key, value: cv, token })),
        );
        await record(w, { f: 'release', key, token }, async () => fromReply(await worker.call({ cmd: 'release', key, token })));
      }
    };

    const nemesisLoop = async (): Promise<void> => {
      while (running && o.nemesis) {
        await new Promise((resolve) => setTimeout(resolve, rnd.int(100, 400)));
        if (!running) break;
        const extra = o.extraNemeses ?? [];
        const kinds = ['partition', 'partition', 'relay-kill', 'relay-pause', 'worker-pause', 'none', ...extra.map((_, i) => `extra-${i}`)];
        const kind = rnd.pick(kinds);
        const w = rnd.int(0, o.workers - 1);
        const ms = rnd.int(Math.round(o.ttlMs * 0.5), Math.round(o.ttlMs * 2.5));
        const at = Math.round(performance.now());
        // Drawn only with several relays, so one relay's runs keep their seeds' schedules.
        const r = relayCount > 1 ? rnd.int(0, relayCount - 1) : 0;
        const relay = relays[r]!;
        const which = relayCount > 1 ? ` ${r}` : '';
        if (kind === 'partition') {
          const mode = rnd.pick(['hold', 'reset', 'drop'] as const);
          events.push(`${at} partition worker ${w} (${mode}) for ${ms} ms`);
          proxies[w]!.setMode(mode);
          await new Promise((resolve) => setTimeout(resolve, ms));
          proxies[w]!.setMode('pass');
        } else if (kind === 'relay-kill') {
          events.push(`${at} relay${which} SIGKILL + restart`);
          await relay.stop('SIGKILL');
          await relay.start();
        } else if (kind === 'relay-pause') {
          events.push(`${at} relay${which} SIGSTOP for ${ms} ms`);
          relay.pause();
          await new Promise((resolve) => setTimeout(resolve, ms));
          relay.resume();
        } else if (kind.startsWith('extra-')) {
          const nemesis = extra[Number(kind.slice('extra-'.length))]!;
          events.push(`${at} ${nemesis.name} for ${ms} ms`);
          const heal = await nemesis.inject(rnd);
          await new Promise((resolve) => setTimeout(resolve, ms));
          await heal();
        } else if (kind === 'worker-pause') {
          events.push(`${at} worker ${w} SIGSTOP for ${ms} ms`);
          const from = performance.now();
          workers[w]!.pause();
          await new Promise((resolve) => setTimeout(resolve, ms));
          workers[w]!.resume();
          frozen[w]!.push([from, performance.now()]);
        }
      }
    };

    const nemesis = nemesisLoop();
    await Promise.all(workers.map((_, w) => workerLoop(w)));
    running = false;
    await nemesis;
    log(`lock chaos seed ${o.seed}: ${ops.length} ops, ${grants} grants, ${events.length} nemesis events`);
  } finally {
    running = false;
    for (const relay of relays) relay.resume();
    for (const w of workers) w.resume();
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all(relays.map((relay) => relay.dispose()));
  }

  // Each granted lease may end at the authority any time after its request was sent + TTL
  // (the authority's deadline starts later than that, never earlier).
  for (const op of [...ops]) {
    if (op.input.f === 'acquire' && op.output?.ok && op.output.token !== undefined) {
      ops.push({
        process: op.process,
        input: { f: 'lost', key: op.input.key, token: op.output.token },
        output: null,
        call: op.call + op.input.ttlMs,
        ret: Infinity,
        tookMs: 0,
      });
    }
  }
  const slowUnavailable = ops.filter((op) => {
    if (op.output !== null || op.input.f === 'lost') return false;
    const deadline = op.input.f === 'acquire' ? op.input.waitMs + o.lockTimeoutMs : o.lockTimeoutMs;
    const end = op.call + op.tookMs;
    const wasFrozen = frozen[op.process]!.some(([from, to]) => from < end && to > op.call);
    return !wasFrozen && op.tookMs > deadline + SLACK_MS;
  });
  const toSpec = (op: ChaosOp): OperationSpec<LockInput, LockOutput> => {
    const i = op.input;
    const input: LockInput =
      i.f === 'acquire' ? { kind: 'acquire', key: i.key } : i.f === 'write' ? { kind: 'write', key: i.key, token: i.token, value: i.value } : { kind: i.f, key: i.key, token: i.token };
    if (op.output === null) return { process: op.process, input, call: op.call, ret: Infinity, outcome: 'unknown' };
    const output: LockOutput = op.output.ok ? (op.output.token !== undefined ? { token: op.output.token } : {}) : { error: op.output.code };
    return { process: op.process, input, output, call: op.call, ret: op.ret, outcome: op.output.ok ? 'ok' : 'fail' };
  };
  const leases = ops.filter((op) => op.input.f !== 'write');
  const writes = (target: 'user' | 'cp') => ops.filter((op) => op.input.f === 'write' && op.input.target === target);
  const cpHistories = Array.from({ length: relayCount }, (_, r) =>
    makeHistory([...leases, ...writes('cp').filter((op) => relayOf.get(op) === r)].sort((a, b) => a.call - b.call).map(toSpec)),
  );
  return {
    ops,
    userHistory: makeHistory([...leases, ...writes('user')].sort((a, b) => a.call - b.call).map(toSpec)),
    cpHistory: cpHistories[0]!,
    cpHistories,
    nemesisEvents: events,
    slowUnavailable,
    grants,
  };
}
