import { describe, expect, it } from 'vitest';
import { MAX_DECLARED_WRITERS } from '@capsync/core';
import { declaredWriters } from '../src/sync/declared-writers.js';
import { Outbox } from '../src/sync/outbox.js';
import type { ReplicaWrite } from '../src/storage/storage-adapter.js';

const emptyBatch = (): ReplicaWrite => ({ updates: [], putOutbox: [], deleteOutbox: [] });

describe('Outbox', () => {
  it('counts local updates until an ack covers the message that carried them', () => {
    const changes: number[] = [];
    const outbox = new Outbox('s', (n) => changes.push(n));
    const a = outbox.add('a');
    const b = outbox.add('b');
    outbox.sent(a, 1);
    outbox.sent(b, 2);
    expect(outbox.pending).toBe(2);
    expect(outbox.ack(1)).toEqual(['a']);
    expect(outbox.pending).toBe(1);
    expect(outbox.ack(2)).toEqual(['b']);
    expect(outbox.pending).toBe(0);
    expect(changes).toEqual([1, 2, 1, 0]);
  });

  it('leaves unsent updates pending, and a sync step 2 carries all of them', () => {
    const outbox = new Outbox('s', () => {});
    outbox.add('a');
    outbox.add('b');
    expect(outbox.ack(10)).toEqual([]);
    outbox.sentAll(3);
    expect(outbox.ack(2)).toEqual([]);
    expect(outbox.ack(3).sort()).toEqual(['a', 'b']);
  });

  it('forgets sequence numbers of a closed connection', () => {
    const outbox = new Outbox('s', () => {});
    const a = outbox.add('a');
    outbox.sent(a, 5);
    outbox.resetSent();
    // The next connection counts from 1 again: its ack 5 is about other messages.
    expect(outbox.ack(5)).toEqual([]);
    expect(outbox.pending).toBe(1);
  });

  it('stores one record per write batch and deletes it once all its updates are durable', () => {
    const outbox = new Outbox('s', () => {});
    const a = outbox.add('a');
    const b = outbox.add('b');
    const first = emptyBatch();
    outbox.fillBatch(first);
    expect(first.putOutbox).toEqual([{ key: 's-0', count: 2 }]);
    outbox.committed(first);
    outbox.sent(a, 1);
    outbox.sent(b, 2);
    outbox.ack(1);
    const second = emptyBatch();
    outbox.fillBatch(second);
    expect(second.putOutbox).toEqual([{ key: 's-0', count: 1 }]);
    outbox.committed(second);
    outbox.ack(2);
    const third = emptyBatch();
    outbox.fillBatch(third);
    expect(third.deleteOutbox).toEqual(['s-0']);
    expect(third.putOutbox).toEqual([]);
  });

  it('writes nothing for a batch acknowledged before it was committed', () => {
    const outbox = new Outbox('s', () => {});
    const a = outbox.add('a');
    outbox.sent(a, 1);
    outbox.ack(1);
    const batch = emptyBatch();
    outbox.fillBatch(batch);
    expect(batch).toEqual(emptyBatch());
  });

  it('deletes a record whose updates were acknowledged while its write was in flight', () => {
    const outbox = new Outbox('s', () => {});
    const a = outbox.add('a');
    const batch = emptyBatch();
    outbox.fillBatch(batch);
    outbox.sent(a, 1);
    outbox.ack(1);
    outbox.committed(batch);
    const next = emptyBatch();
    outbox.fillBatch(next);
    expect(next.deleteOutbox).toEqual(['s-0']);
  });

  it('adopts stored records on load and counts them as pending until a sync step 2 is acked', () => {
    const outbox = new Outbox('s2', () => {});
    outbox.load([
      { key: 'old-0', count: 3 },
      { key: 'old-1', count: 2 },
    ]);
    expect(outbox.pending).toBe(5);
    outbox.sentAll(1);
    outbox.ack(1);
    expect(outbox.pending).toBe(0);
    const batch = emptyBatch();
    outbox.fillBatch(batch);
    expect(batch.deleteOutbox.sort()).toEqual(['old-0', 'old-1']);
  });

  it('resolves whenDurable only when every update pending at call time is durable', async () => {
    const outbox = new Outbox('s', () => {});
    const a = outbox.add('a');
    const waiter = outbox.whenDurable();
    let done = false;
    void waiter.promise.then(() => (done = true));
    const b = outbox.add('b');
    outbox.sent(b, 1);
    outbox.ack(1);
    await Promise.resolve();
    expect(done).toBe(false);
    outbox.sent(a, 2);
    outbox.ack(2);
    await waiter.promise;
    expect(done).toBe(true);
  });
});

describe('Outbox.markDurable (another tab sent our updates)', () => {
  it('drops the named entries, resolves waiters and deletes the stored record', () => {
    const changes: number[] = [];
    const outbox = new Outbox('s', (n) => changes.push(n));
    outbox.add('s:0');
    outbox.add('s:1');
    const batch = emptyBatch();
    outbox.fillBatch(batch);
    outbox.committed(batch);
    const waiter = outbox.whenDurable();
    outbox.markDurable(['s:0', 'unknown']);
    expect(outbox.pending).toBe(1);
    outbox.markDurable(['s:1']);
    expect(outbox.pending).toBe(0);
    expect(changes).toEqual([1, 2, 1, 0]);
    const next = emptyBatch();
    outbox.fillBatch(next);
    expect(next.deleteOutbox).toEqual(['s-0']);
    return waiter.promise;
  });

  it("stores the client ids each batch was written under; a later session declares those still pending, latest first, own id first, 16 at most", () => {
    const earlier = new Outbox('s', () => {});
    const a = earlier.add('a', 111);
    earlier.add('b', 222); // the Y.Doc changed its id mid-batch
    const first = emptyBatch();
    earlier.fillBatch(first);
    expect(first.putOutbox).toEqual([{ key: 's-0', count: 2, writers: [111, 222] }]);
    earlier.committed(first);
    earlier.add('c', 333);
    const second = emptyBatch();
    earlier.fillBatch(second);
    earlier.committed(second);
    earlier.sent(a, 1);
    earlier.ack(1);
    const third = emptyBatch();
    earlier.fillBatch(third);
    expect(third.putOutbox).toEqual([{ key: 's-0', count: 1, writers: [111, 222] }]); // a count change keeps the ids

    // The next page load (or another tab) finds the records, and an acknowledged batch's ids are not declared.
    const later = new Outbox('t', () => {});
    later.load([...third.putOutbox, ...second.putOutbox, { key: 'old', count: 1 }, { key: 'done', count: 1, writers: [444] }, { key: 'bad', count: 1, writers: [-1, 1.5, 'x' as never] }]);
    expect(later.writers(16).sort()).toEqual([111, 222, 333, 444]);
    expect(declaredWriters(999, later.writers(MAX_DECLARED_WRITERS), [555])[0]).toBe('writes:999');
    const many = Array.from({ length: 40 }, (_, i) => i + 1);
    expect(declaredWriters(999, many, [555])).toEqual(['writes:999', ...many.slice(0, 15).map((i) => `writes:${i}`)]);
  });
});
