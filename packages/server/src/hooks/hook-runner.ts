import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { HookName, RelayHooks } from './relay-hooks.js';

/**
 * Calls the backend's hooks as RelayHooks promises: each call bounded in time, its failure
 * logged and counted, never thrown at the caller, and the calls in flight bounded.
 */
export class HookRunner {
  private inFlight = 0;

  constructor(
    readonly hooks: RelayHooks,
    private readonly timeoutMs: number,
    private readonly metrics: RelayMetrics,
    private readonly logger: Logger,
    /** Calls running at once, at most (`maxHookCallsInFlight`, default MAX_HOOK_CALLS_IN_FLIGHT). */
    private readonly maxInFlight: number,
    /** Prefix of the `hook` label of its calls' metric: '' for the app's hooks, 'webhooks.' for the relay's webhooks. */
    private readonly label = '',
  ) {}

  has(name: HookName): boolean {
    return typeof this.hooks[name] === 'function';
  }

  /**
   * Calls hook `name` with `event`; resolves when it settled or timed out (never rejects).
   * Resolves true when it completed, false when it failed, timed out or was dropped.
   */
  run<N extends HookName>(name: N, event: Parameters<NonNullable<RelayHooks[N]>>[0]): Promise<boolean> {
    return this.call(name, event).outcome;
  }

  /**
   * `run`, and `settled`: when the hook itself has settled (past its timeout too; never, for a
   * hook that never settles). What holds one call in flight per document waits for `settled`.
   */
  call<N extends HookName>(
    name: N,
    event: Parameters<NonNullable<RelayHooks[N]>>[0],
    /** Made past the in-flight bound too (the pair of a call that was made: see RelayHooks). */
    { unbounded = false }: { unbounded?: boolean } = {},
  ): { outcome: Promise<boolean>; settled: Promise<void>; dropped: boolean } {
    const hook = this.hooks[name] as ((e: typeof event) => unknown) | undefined;
    if (!hook) return { outcome: Promise.resolve(true), settled: Promise.resolve(), dropped: false };
    if (this.inFlight >= this.maxInFlight && !unbounded) {
      this.counted(name, 'dropped');
      return { outcome: Promise.resolve(false), settled: Promise.resolve(), dropped: true };
    }
    this.inFlight++;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.timeoutMs);
      timer.unref();
    });
    const called = (async () => {
      await hook.call(this.hooks, event);
      return 'ok' as const;
    })();
    const settled = called.then(
      () => {},
      () => {},
    );
    const outcome = Promise.race([called, timedOut])
      .then(
        (outcome) => {
          if (outcome === 'timeout') this.logger.warn({ hook: name, timeoutMs: this.timeoutMs }, 'a hook did not finish in time; going on without it');
          this.counted(name, outcome);
          return outcome === 'ok';
        },
        (err: unknown) => {
          this.logger.error({ hook: name, err }, 'a hook failed');
          this.counted(name, 'error');
          return false;
        },
      )
      .finally(() => {
        clearTimeout(timer);
        // A hook that timed out still counts until it settles: it still holds what it holds.
        void settled.finally(() => this.inFlight--);
      });
    return { outcome, settled, dropped: false };
  }

  /**
   * Calls hook `name` synchronously (`onAwareness`, which sits on the path of what it judges):
   * what it returned, when it returned at once and `valid` accepts it; undefined when it threw,
   * returned something `valid` refuses (both counted `error`) or returned a promise (not waited
   * for: counted `timeout`, as a hook past a time budget of zero; a rejection of it is logged).
   * Holds no slot of the in-flight bound: the call is over when this returns.
   */
  runSync<N extends HookName>(name: N, event: Parameters<NonNullable<RelayHooks[N]>>[0], valid: (result: unknown) => boolean): { result: unknown } | undefined {
    const hook = this.hooks[name] as ((e: typeof event) => unknown) | undefined;
    if (!hook) return { result: undefined };
    let result: unknown;
    try {
      result = hook.call(this.hooks, event);
    } catch (err) {
      this.logger.error({ hook: name, err }, 'a hook failed');
      this.counted(name, 'error');
      return undefined;
    }
    if (typeof (result as PromiseLike<unknown> | null)?.then === 'function') {
      this.logger.warn({ hook: name }, 'a synchronous hook returned a promise; going on without it');
      Promise.resolve(result).catch((err: unknown) => this.logger.error({ hook: name, err }, 'a hook failed'));
      this.counted(name, 'timeout');
      return undefined;
    }
    if (!valid(result)) {
      this.logger.error({ hook: name }, 'a hook returned what the relay cannot use');
      this.counted(name, 'error');
      return undefined;
    }
    this.counted(name, 'ok');
    return { result };
  }

  private counted(hook: HookName, outcome: 'ok' | 'error' | 'timeout' | 'dropped'): void {
    this.metrics.hookCalls.inc({ hook: `${this.label}${hook}`, outcome });
  }
}
