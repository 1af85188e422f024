/**
 * A small seeded PRNG (mulberry32) so randomized tests replay exactly from their seed.
 * Tests print the seed; set SEED=<n> to replay one.
 */
export class SeededRandom {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(0, 255);
    return out;
  }
}

/** The seed from SEED, or a fresh one; logged so a failure can be replayed. */
export function testSeed(label: string): number {
  const seed = process.env['SEED'] ? Number(process.env['SEED']) : Math.floor(Math.random() * 2 ** 31);
  console.log(`[${label}] seed=${seed} (replay with SEED=${seed})`);
  return seed;
}
