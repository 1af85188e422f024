import { describe, expect, it } from 'vitest';
import { AckOrder, InputQueue } from '../src/index.js';

/** A promise resolved or rejected from outside. */
function deferred(): { promise: Promise<void>; resolve(): void; reject(err: Error): void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe('AckOrder', () => {
  it('acknowledges in message order even when a later update commits first', async () => {
    const order = new AckOrder();
    const first = deferred();
    const second = deferred();
    const acked: number[] = [];
    void order.update(first.promise).then(() => acked.push(1));
    void order.update(second.promise).then(() => acked.push(2));
    second.resolve();
    await Promise.resolve();
    await Promise.resolve();
    expect(acked).toEqual([]);
    first.resolve();
    await order.barrier(Promise.resolve());
    expect(acked).toEqual([1, 2]);
  });

  it('a barrier waits for earlier messages and for the document to settle', async () => {
    const order = new AckOrder();
    const earlier = deferred();
    const settled = deferred();
    let done = false;
    void order.update(earlier.promise);
    void order.barrier(settled.promise).then(() => (done = true));
    earlier.resolve();
    await earlier.promise;
    await Promise.resolve();
    expect(done).toBe(false);
    settled.resolve();
    await order.barrier(Promise.resolve());
    expect(done).toBe(true);
  });

  it('nothing after a failed commit is acknowledged', async () => {
    const order = new AckOrder();
    const failed = deferred();
    const a = order.update(failed.promise);
    const b = order.update(Promise.resolve());
    const c = order.barrier(Promise.resolve());
    failed.reject(new Error('disk full'));
    await expect(a).rejects.toThrow('disk full');
    await expect(b).rejects.toThrow('disk full');
    await expect(c).rejects.toThrow('disk full');
  });
});

describe('InputQueue', () => {
  it('keeps frames in order up to its byte bound and refuses past it', () => {
    const q = new InputQueue(10);
    expect(q.push(new Uint8Array(4))).toBe(true);
    expect(q.push(new Uint8Array(6))).toBe(true);
    expect(q.push(new Uint8Array(1))).toBe(false);
    expect(q.length).toBe(2);
    expect(q.shift()!.byteLength).toBe(4);
    expect(q.push(new Uint8Array(4))).toBe(true);
    expect([q.shift()!.byteLength, q.shift()!.byteLength, q.shift()]).toEqual([6, 4, undefined]);
    expect(q.push(new Uint8Array(10))).toBe(true);
    q.clear();
    expect(q.length).toBe(0);
  });
});
