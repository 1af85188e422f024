import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import { MAX_HOOK_CALLS_IN_FLIGHT, type HookName, type RelayHooks } from './relay-hooks.js';

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
  call<N extends HookName>(name: N, event: Parameters<NonNullable<RelayHooks[N]>>[0]): { outcome: Promise<boolean>; settled: Promise<void> } {
    const hook = this.hooks[name] as ((e: typeof event) => unknown) | undefined;
    if (!hook) return { outcome: Promise.resolve(true), settled: Promise.resolve() };
    if (this.inFlight >= MAX_HOOK_CALLS_IN_FLIGHT) {
      this.counted(name, 'dropped');
      return { outcome: Promise.resolve(false), settled: Promise.resolve() };
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
    return { outcome, settled };
  }

  private counted(hook: HookName, outcome: 'ok' | 'error' | 'timeout' | 'dropped'): void {
    this.metrics.hookCalls.inc({ hook, outcome });
  }
}
