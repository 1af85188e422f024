/**
 * How the etcd lock backend talks to etcd when members fail: every call bounded by the
 * operation's deadline, retried (on another member when there is one) only inside it, and
 * answered with `UnavailableError` once the deadline has passed. It holds the etcd3 client
 * (`EtcdCalls`), configured with fault-handling policies of our own so that etcd3 neither
 * retries past our deadline nor shuts a member out for longer than a partition lasts, and
 * the classification of which errors are worth another try.
 *
 * The lock semantics (keys, leases, tokens, waiters) are the backend's (etcd-backend.ts).
 */
import { CapsyncError, UnavailableError } from '@capsync/core';
import { ClientClosedError, Etcd3, EtcdLeaseInvalidError, castGrpcError, isRecoverableError, type IOptions, type KVClient } from 'etcd3';
import type { Logger } from '../logger.js';
import { shuttingDown } from './lock-backend.js';

/** grpc's per-call options (etcd3 does not re-export the type; it comes from @grpc/grpc-js). */
export type CallOptions = NonNullable<Parameters<KVClient['range']>[1]>;
type FaultHandling = NonNullable<IOptions['faultHandling']>;
type Policy = NonNullable<FaultHandling['global']>;
type Backoff = NonNullable<FaultHandling['watchBackoff']>;

/** How long a member that failed is passed over while another one has not failed. */
const HOST_COOLDOWN_MS = 1_000;
/** Shortest share of the budget one attempt gets when there are several members to try. */
const MIN_ATTEMPT_MS = 250;


// ---- retry classification ----

/**
 * A member was passed over because it failed recently and another one has not. Not one of
 * etcd3's recoverable errors: those make etcd3 tear down the member's connections.
 */
class HostAvoidedError extends Error {}

/** One attempt failed in a way worth another try: it ran out of its share of the budget, or a stream ended early. */
class TransientError extends Error {}

/** Errors worth another try (on another member, or the same one a little later). */
function retryable(err: unknown): boolean {
  if (err instanceof HostAvoidedError || err instanceof TransientError) return true;
  return err instanceof Error && isRecoverableError(err);
}

// ---- deadline-bounded calls ----

export interface EtcdCallsOptions {
  /** etcd client URLs (`http://host:2379`), already validated. */
  endpoints: string[];
  /** The operation budget: only used to say, in `UnavailableError`, how long etcd had. */
  opTimeoutMs: number;
  logger?: Logger | undefined;
}

/**
 * The etcd3 client and the calls made through it, each bounded by a deadline.
 *
 * Contract:
 * - `call` (and `keepAlive`, `revoke`, built on it) settles by its `deadline`: with the
 *   result, with UnavailableError (etcd did not answer in time, or failed in a way no retry
 *   fixes), or with the CapsyncError its `fn` threw (passed through untouched).
 * - Retries happen only inside the deadline, so `fn` must be safe to repeat: an attempt that
 *   timed out may still have been applied.
 * - After `close`, every call (new or in flight) rejects with `shuttingDown()`.
 * - `client` is for the caller's own requests inside `fn`, and for watches (which are not
 *   bounded: a watch waits for as long as it is wanted).
 */
export class EtcdCalls {
  readonly client: Etcd3;
  readonly endpointCount: number;
  private readonly opTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private closed = false;

  constructor(options: EtcdCallsOptions) {
    this.opTimeoutMs = options.opTimeoutMs;
    this.logger = options.logger;
    this.endpointCount = options.endpoints.length;
    this.client = new Etcd3({
      hosts: options.endpoints,
      // etcd3's defaults would stretch an operation past our deadline: its global policy
      // retries three times, and its per-member circuit breaker shuts a member out for 5 s
      // after three failures (with one endpoint: every call fails for 5 s after a partition
      // heals). Retries are ours (`call`), inside the operation's deadline.
      faultHandling: {
        global: passThroughPolicy(),
        host: hostPolicyFactory(this.endpointCount),
        // A watch stream that broke reconnects within a second, not the default 30 s.
        watchBackoff: cappedBackoff(50, 1_000),
      },
      grpcOptions: {
        // Reconnect to a member soon after it comes back (grpc's default backoff reaches 120 s).
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        // Our channels only: a channel torn down after a failure must not come back with a
        // shared subchannel still sitting in its reconnect backoff.
        'grpc.use_local_subchannel_pool': 1,
      },
    });
  }

  /** Closes the client: calls in flight and later ones reject with `shuttingDown()`. */
  close(): void {
    this.closed = true;
    this.client.close();
  }

  /** One keepalive: resolves with the TTL etcd reports (0 or less: the lease no longer exists). */
  keepAlive(leaseId: string, deadline: number, what: string): Promise<number> {
    return this.call(what, deadline, async (options, signal) => {
      const stream = await this.client.leaseClient.leaseKeepAlive(options);
      return new Promise<number>((resolve, reject) => {
        const onAbort = () => stream.cancel();
        const settle = () => signal.removeEventListener('abort', onAbort);
        stream.on('data', (res) => {
          settle();
          // Half-close: the stream ends cleanly (cancelling it would make etcd3 reset the channel).
          stream.end();
          resolve(Number(res.TTL));
        });
        stream.on('error', (err) => {
          settle();
          reject(castGrpcError(err));
        });
        stream.on('end', () => {
          settle();
          reject(new TransientError('etcd ended the keepalive stream without an answer'));
        });
        if (signal.aborted) {
          // The attempt's time ran out while the stream was being opened.
          onAbort();
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
        stream.write({ ID: leaseId });
      });
    });
  }

  /** Revokes an etcd lease (deleting its key). False if etcd no longer had it. */
  revoke(leaseId: string, deadline: number, what: string): Promise<boolean> {
    return this.call(what, deadline, async (options, _signal, attempt) => {
      try {
        await this.client.leaseClient.leaseRevoke({ ID: leaseId }, options);
        return true;
      } catch (err) {
        // After an attempt whose answer was lost, "not found" is that attempt's success.
        if (err instanceof EtcdLeaseInvalidError) return attempt > 0;
        throw err;
      }
    });
  }

  /**
   * Runs `fn` against etcd until it succeeds, retrying errors that may be a member's (other
   * members are tried: etcd3 picks one at random and passes over ones that just failed), and
   * gives up with UnavailableError at `deadline`. Each attempt gets a grpc deadline and a
   * timer of its own; with several members, the first attempts get part of the budget only,
   * so a member that hangs (frozen, or cut off with its connection up) leaves time to ask
   * another. `fn` must be safe to repeat: an attempt that timed out may have been applied.
   */
  async call<T>(
    what: string,
    deadline: number,
    fn: (options: CallOptions, signal: AbortSignal, attempt: number) => Promise<T>,
  ): Promise<T> {
    let lastError: unknown;
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw shuttingDown();
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw this.unavailable(what, lastError);
      const budget = this.endpointCount > 1 ? Math.min(remaining, Math.max(remaining / 2, MIN_ATTEMPT_MS)) : remaining;
      const abort = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          fn({ deadline: Date.now() + budget }, abort.signal, attempt),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              abort.abort();
              reject(new TransientError(`no answer within ${Math.round(budget)} ms`));
            }, budget);
          }),
        ]);
      } catch (err) {
        lastError = err;
        if (err instanceof CapsyncError) throw err;
        if (this.closed || err instanceof ClientClosedError) throw shuttingDown();
        if (!retryable(err)) throw this.unavailable(what, err);
        this.logger?.debug({ err, what, attempt }, 'etcd call failed; trying again');
        // Connection refused and the like fail at once: pause a little before the next try.
        const pause = Math.min(25 * 2 ** attempt, 200, Math.max(0, deadline - performance.now()));
        if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  private unavailable(what: string, cause: unknown): UnavailableError {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    return new UnavailableError(`etcd did not answer within ${this.opTimeoutMs} ms (${what})${why}`, { cause });
  }
}

// ---- etcd3 fault-handling policies ----
//
// etcd3 takes cockatiel policies; etcd3 only calls `execute`. These small ones avoid
// depending on cockatiel directly (it is etcd3's dependency, not ours).

const noEvent = () => ({ dispose() {} });
const neverAborted = new AbortController().signal;

function policy(execute: <T>(fn: () => PromiseLike<T> | T) => Promise<T>): Policy {
  return {
    _altReturn: undefined as never,
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: (fn) => execute(() => fn({ signal: neverAborted })),
  };
}

/** The global policy: one try (retries are the backend's own, within its deadline). */
function passThroughPolicy(): Policy {
  return policy(async (fn) => fn());
}

/**
 * Per member: after a member fails (recoverable errors: unreachable, timed out, no leader),
 * pass it over for HOST_COOLDOWN_MS while another member has not failed, so a member that
 * hangs does not eat every retry. With every member failing, all are tried.
 */
function hostPolicyFactory(hostCount: number): (host: string) => Policy {
  const failedAt = new Map<string, number>();
  const recentlyFailed = (host: string) => performance.now() - (failedAt.get(host) ?? -Infinity) < HOST_COOLDOWN_MS;
  return (host) =>
    policy(async (fn) => {
      if (hostCount > 1 && recentlyFailed(host)) {
        const others = [...failedAt.entries()].filter(([h]) => h !== host && recentlyFailed(h)).length;
        // Some member has not failed recently (members never seen have not): try it instead.
        if (others < hostCount - 1) throw new HostAvoidedError(`etcd member ${host} failed recently`);
      }
      try {
        const result = await fn();
        failedAt.delete(host);
        return result;
      } catch (err) {
        if (err instanceof Error && isRecoverableError(err)) failedAt.set(host, performance.now());
        throw err;
      }
    });
}

/** Exponential backoff from `initialMs`, doubling up to `maxMs` (watch stream reconnects). */
function cappedBackoff(initialMs: number, maxMs: number): Backoff {
  const at = (ms: number): Backoff => ({ duration: ms, next: () => at(Math.min(ms * 2, maxMs)) });
  return { duration: initialMs, next: () => at(initialMs) };
}
