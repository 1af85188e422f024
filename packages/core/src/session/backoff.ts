/** Reconnect delays: exponential with full jitter, capped. */
export interface BackoffOptions {
  /** First retry's upper bound (ms). */
  baseMs: number;
  /** Largest delay (ms). */
  maxMs: number;
}

/** Doublings after which the bound stops growing (it reached `maxMs` long before, for any sane base). */
const MAX_DOUBLINGS = 30;

/**
 * The one reconnect backoff of capsync (clients, peer relay links, the link to the lock
 * authority). "Full jitter" (AWS architecture blog, 2015): a uniformly random delay between 0
 * and a bound that doubles from `baseMs` at each attempt up to `maxMs`, so clients cut off
 * together do not come back together.
 */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly options: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call raises the bound. */
  next(): number {
    const bound = Math.min(this.options.maxMs, this.options.baseMs * 2 ** Math.min(this.attempt, MAX_DOUBLINGS));
    this.attempt++;
    return Math.floor(this.random() * bound);
  }

  /** A connection proved healthy: start again from the base. */
  reset(): void {
    this.attempt = 0;
  }

  /** Retrying soon cannot help (the other side refuses us): from now on, at the capped bound. */
  saturate(): void {
    this.attempt = Math.max(this.attempt, MAX_DOUBLINGS);
  }

  /** Attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }
}
