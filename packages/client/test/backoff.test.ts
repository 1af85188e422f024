import { describe, expect, it } from 'vitest';
import { Backoff } from '@capsync/core';

describe('Backoff (full jitter)', () => {
  it('draws each delay uniformly below an exponential bound capped at maxMs', () => {
    const draws = [0.999, 0.999, 0.999, 0.999, 0.999, 0.999, 0.5, 0];
    let i = 0;
    const backoff = new Backoff({ baseMs: 100, maxMs: 1000 }, () => draws[i++]!);
    const delays = draws.map(() => backoff.next());
    expect(delays.slice(0, 6)).toEqual([99, 199, 399, 799, 999, 999]);
    expect(delays[6]).toBe(500);
    expect(delays[7]).toBe(0);
  });

  it('starts over from the base after reset', () => {
    const backoff = new Backoff({ baseMs: 100, maxMs: 10_000 }, () => 0.999);
    for (let i = 0; i < 5; i++) backoff.next();
    backoff.reset();
    expect(backoff.next()).toBe(99);
  });

  it('never exceeds the cap even after very many attempts', () => {
    const backoff = new Backoff({ baseMs: 500, maxMs: 15_000 }, () => 0.9999999);
    let max = 0;
    for (let i = 0; i < 2000; i++) max = Math.max(max, backoff.next());
    expect(max).toBeLessThan(15_000);
    expect(Number.isFinite(max)).toBe(true);
  });
});
