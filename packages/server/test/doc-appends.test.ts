import { describe, expect, it } from 'vitest';
import { StorageError, type AppendResult } from '@capsync/core';
import { DocReplication } from '../src/mesh/replication.js';
import { RelayMetrics } from '../src/metrics.js';
import { DocAppends } from '../src/relay/doc-appends.js';
import type { BackgroundCompaction } from '../src/relay/doc-load.js';
import type { RelayDocDeps } from '../src/relay/relay-doc-deps.js';
import { StorageOutage } from '../src/relay/storage-outage.js';
import { StorageRetries } from '../src/relay/storage-retries.js';

/** A store whose appends commit when the test says (`commit(i)`), in any order. */
function gatedAppends() {
  const metrics = new RelayMetrics();
  const gates: { resolve(r: AppendResult): void; reject(err: unknown): void }[] = [];
  const store = {
    append: () => new Promise<AppendResult>((resolve, reject) => gates.push({ resolve, reject })),
  } as unknown as RelayDocDeps['store'];
  const replication = new DocReplication(1);
  const committed: number[] = [];
  const appends = new DocAppends(
    'doc',
    { store, metrics, compaction: { maxUpdates: 1e9, maxBytes: 1e12 } },
    replication,
    { soon: () => {} } as unknown as BackgroundCompaction,
    new StorageRetries(new StorageOutage(metrics)),
    () => {},
    (position) => committed.push(position),
  );
  const commit = (i: number) => gates[i]!.resolve({ position: i + 1, logCount: i + 1, logBytes: i + 1 });
  const fail = (i: number) => gates[i]!.reject(new StorageError('disk I/O error'));
  const appended = () => gates.length;
  return { appends, replication, commit, fail, appended, committed };
}

const settledYet = async (p: Promise<void>): Promise<boolean> => {
  let done = false;
  void p.then(() => (done = true));
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  return done;
};

describe('DocAppends', () => {
  it('settled() waits for the appends handed over before it, not for those that keep coming after', async () => {
    const { appends, replication, commit, appended, committed } = gatedAppends();
    replication.recordApplied(1, null);
    void appends.append(new Uint8Array([1])).catch(() => {});
    await new Promise((r) => setImmediate(r));
    const first = appends.settled();
    // Steady writes: another append is always in flight from here on.
    replication.recordApplied(1, null);
    void appends.append(new Uint8Array([2])).catch(() => {});
    await new Promise((r) => setImmediate(r));
    expect(appended()).toBe(2);
    expect(await settledYet(first)).toBe(false);
    commit(0);
    expect(await settledYet(first)).toBe(true);
    // Its bookkeeping ran first (durable position, commit reported).
    expect(committed).toEqual([1]);
    const second = appends.settled();
    replication.recordApplied(1, null);
    void appends.append(new Uint8Array([3])).catch(() => {});
    await new Promise((r) => setImmediate(r));
    commit(2); // a later append committing first does not settle what came before it
    expect(await settledYet(second)).toBe(false);
    commit(1);
    expect(await settledYet(second)).toBe(true);
  });

  it('a failed append settles it, not before the earlier ones; drained() also waits for appends handed over while it waits', async () => {
    const { appends, commit, fail, appended } = gatedAppends();
    void appends.append(new Uint8Array([1])).catch(() => {});
    void appends.append(new Uint8Array([2])).catch(() => {});
    await new Promise((r) => setImmediate(r));
    const settled = appends.settled();
    const drained = appends.drained();
    fail(1);
    expect(await settledYet(settled)).toBe(false); // the first is still being written
    void appends.append(new Uint8Array([3])).catch(() => {});
    await new Promise((r) => setImmediate(r));
    expect(appended()).toBe(3);
    commit(0);
    expect(await settledYet(settled)).toBe(true);
    expect(await settledYet(drained)).toBe(false); // the third came while it waited
    commit(2);
    expect(await settledYet(drained)).toBe(true);
  });
});
