/** Latency samples and the numbers derived from them. */

/** Latencies in whole microseconds, kept exactly (a few MB per level) for exact percentiles. */
export class LatencySamples {
  private samples = new Uint32Array(1 << 16);
  private count = 0;
  private sorted = true;

  get size(): number {
    return this.count;
  }

  add(micros: number): void {
    if (this.count === this.samples.length) {
      const grown = new Uint32Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.count++] = micros < 0 ? 0 : micros;
    this.sorted = false;
  }

  /** The `p`-th percentile (0..100, nearest rank) in milliseconds; NaN without samples. */
  percentileMs(p: number): number {
    if (this.count === 0) return Number.NaN;
    const view = this.samples.subarray(0, this.count);
    if (!this.sorted) {
      view.sort();
      this.sorted = true;
    }
    const rank = Math.min(this.count - 1, Math.max(0, Math.ceil((p / 100) * this.count) - 1));
    return view[rank]! / 1000;
  }
}
