import { describe, expect, it } from 'vitest';
import { StorageError } from '@capsync/core';
import { RelayMetrics } from '../src/metrics.js';
import { StorageOutage } from '../src/relay/storage-outage.js';
import { StorageRetries } from '../src/relay/storage-retries.js';

/** A storage that cannot be reached until `up`; records the writes that committed, in order. */
function flakyStorage() {
  const committed: string[] = [];
  let reachable = false;
  let attempts = 0;
  return {
    committed,
    get attempts() {
      return attempts;
    },
    up: () => void (reachable = true),
    write: (what: string) => async (): Promise<string> => {
      attempts++;
      if (!reachable) throw new StorageError('connect ECONNREFUSED', { retryable: true });
      committed.push(what);
      return what;
    },
  };
}

function setup() {
  const metrics = new RelayMetrics();
  const outage = new StorageOutage(metrics);
  return { outage, retries: new StorageRetries(outage) };
}

describe('StorageRetries', () => {
  it('tries writes that could not reach storage again until they commit, in the order they first failed; new ones wait behind them', async () => {
    const { outage, retries } = setup();
    const storage = flakyStorage();
    const a = retries.run(storage.write('claim'));
    const b = retries.run(storage.write('append 1'));
    await new Promise((r) => setImmediate(r));
    expect(outage.unavailable).toBe(true);
    const c = retries.run(storage.write('append 2')); // queued behind, not tried ahead of them
    while (storage.attempts < 4) await new Promise((r) => setTimeout(r, 10));
    expect(storage.committed).toEqual([]);
    storage.up();
    await expect(Promise.all([a, b, c])).resolves.toEqual(['claim', 'append 1', 'append 2']);
    expect(storage.committed).toEqual(['claim', 'append 1', 'append 2']);
    expect(outage.unavailable).toBe(false);
  });

  it('a failure that would repeat rejects at once; a write to reachable storage goes straight through', async () => {
    const { outage, retries } = setup();
    await expect(retries.run(async () => Promise.reject(new StorageError('disk I/O error')))).rejects.toMatchObject({ retryable: false });
    await expect(retries.run(async () => 7)).resolves.toBe(7);
    expect(outage.unavailable).toBe(false);
  });

  it('stop gives every waiting write up with its error, and leaves the outage count at zero', async () => {
    const { outage, retries } = setup();
    const storage = flakyStorage();
    const a = retries.run(storage.write('a'));
    const b = retries.run(storage.write('b'));
    a.catch(() => {});
    b.catch(() => {});
    await new Promise((r) => setImmediate(r));
    retries.stop();
    await expect(a).rejects.toMatchObject({ retryable: true });
    await expect(b).rejects.toBeInstanceOf(StorageError);
    expect(outage.unavailable).toBe(false);
    storage.up();
    expect(storage.committed).toEqual([]);
  });
});
