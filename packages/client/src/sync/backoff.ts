/** Reconnect delays: exponential with full jitter, capped. */
export interface BackoffOptions {
  /** First retry's upper bound. Default 500 ms. */
  baseMs: number;
  /** Largest delay. Default 15 s. */
  maxMs: number;
}

/**
 * "Full jitter" (AWS architecture blog, 2015): a uniformly random delay between 0 and the
 * exponential bound, so clients cut off together do not come back together.
 */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly options: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call raises the bound. */
  next(): number {
    const bound = Math.min(this.options.maxMs, this.options.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(this.random() * bound);
  }

  /** A connection proved healthy: start again from the base. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
