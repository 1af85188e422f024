import { describe, expect, it } from 'vitest';
import { FencedResource, isCapsyncError } from '@capsync/core';

describe('FencedResource', () => {
  it('accepts equal and higher tokens, refuses lower ones without running the write', async () => {
    const r = new FencedResource();
    const log: string[] = [];
    await r.write('k', 3, () => log.push('3a'));
    await r.write('k', 3, () => log.push('3b'));
    await r.write('k', 5, () => log.push('5'));
    const stale = await r.write('k', 4, () => log.push('4')).catch((e: unknown) => e);
    expect(isCapsyncError(stale, 'stale-token')).toBe(true);
    expect(log).toEqual(['3a', '3b', '5']);
    expect(await r.highest('k')).toBe(5);
    // Keys are independent.
    await r.write('other', 1, () => log.push('o1'));
  });

  it('serializes writes per key, so a slow old write cannot land after a newer one', async () => {
    const r = new FencedResource();
    const order: number[] = [];
    let release!: () => void;
    const slow = r.write('k', 1, () => new Promise<void>((resolve) => (release = resolve)).then(() => order.push(1)));
    const newer = r.write('k', 2, () => order.push(2));
    const older = r.write('k', 1, () => order.push(-1)).catch((e: unknown) => e);
    await new Promise((resolve) => setImmediate(resolve));
    release();
    await slow;
    await newer;
    expect(isCapsyncError(await older, 'stale-token')).toBe(true);
    expect(order).toEqual([1, 2]);
  });

  it('keeps the token when the write fails, and refuses bad tokens', async () => {
    const r = new FencedResource();
    await expect(r.write('k', 7, () => Promise.reject(new Error('disk full')))).rejects.toThrow('disk full');
    expect(await r.highest('k')).toBe(7);
    await expect(r.write('k', 0, () => 1)).rejects.toThrow(RangeError);
    await expect(r.write('k', 1.5, () => 1)).rejects.toThrow(RangeError);
  });
});
