/**
 * BackgroundCompaction's scheduling against a store whose compactions the test completes. While
 * a compaction runs, every append still sees the log over the threshold (nothing is compacted
 * until it commits) and asks for another: each compaction was followed by a nearly empty one
 * (bench:cluster's PostgreSQL log: about one compaction per 250 updates at a threshold of 500),
 * each holding a store with one write at a time. Now another is asked for only when what the
 * running one leaves behind is over the threshold by itself.
 */
import { expect, it } from 'vitest';
import * as Y from 'yjs';
import { createLogger } from '../src/logger.js';
import { BackgroundCompaction } from '../src/relay/doc-load.js';
import type { RelayDocDeps } from '../src/relay/relay-doc-deps.js';

function setup() {
  const calls: { through: number; done: () => void; fail: (err: Error) => void }[] = [];
  const deps = {
    store: {
      compact: (_name: string, _snapshot: Uint8Array, through: number) => new Promise<void>((done, fail) => calls.push({ through, done, fail })),
    },
    compaction: { maxUpdates: 10, maxBytes: 1 << 20 },
    metrics: { compactions: { inc: () => {} } },
    logger: createLogger('silent'),
  } as unknown as RelayDocDeps;
  const doc = new Y.Doc();
  doc.getText('t').insert(0, 'content');
  const compaction = new BackgroundCompaction('doc', deps, () => doc, () => false);
  const started = async (n: number): Promise<void> => {
    while (calls.length < n) await new Promise((r) => setImmediate(r));
  };
  return { calls, compaction, started };
}

const log = (logCount: number) => ({ logCount, logBytes: logCount * 20 });

it('appends committed during a compaction, fewer than the threshold, do not run another after it', async () => {
  const { calls, compaction, started } = setup();
  compaction.soon(10, log(10));
  await started(1);
  expect(calls[0]!.through).toBe(10);
  // Committed while it runs: the log still counts what it is compacting.
  for (let p = 11; p <= 15; p++) compaction.soon(p, log(p));
  calls[0]!.done();
  await compaction.idle();
  await new Promise((r) => setImmediate(r));
  await compaction.idle();
  expect(calls).toHaveLength(1);
});

it('appends committed during a compaction that are over the threshold themselves run the next one after it', async () => {
  const { calls, compaction, started } = setup();
  compaction.soon(10, log(10));
  await started(1);
  for (let p = 11; p <= 20; p++) compaction.soon(p, log(p));
  calls[0]!.done();
  await started(2);
  expect(calls[1]!.through).toBe(20);
  calls[1]!.done();
  await compaction.idle();
});

it('without the log size (or a through it cannot place), it runs once more as before', async () => {
  const { calls, compaction, started } = setup();
  compaction.soon(10, log(10));
  await started(1);
  compaction.soon(11);
  calls[0]!.done();
  await started(2);
  expect(calls[1]!.through).toBe(11);
  calls[1]!.done();
  await compaction.idle();
});

it('appends asked for while it had not started yet are covered by it: no second compaction', async () => {
  const { calls, compaction, started } = setup();
  compaction.soon(10, log(10));
  compaction.soon(11, log(11));
  compaction.soon(12, log(12));
  await started(1);
  expect(calls[0]!.through).toBe(12);
  calls[0]!.done();
  await compaction.idle();
  await new Promise((r) => setImmediate(r));
  expect(calls).toHaveLength(1);
});

it('a compaction that failed is run again when appends asked for one meanwhile, even under the threshold', async () => {
  const { calls, compaction, started } = setup();
  compaction.soon(10, log(10));
  await started(1);
  compaction.soon(11, log(11));
  calls[0]!.fail(new Error('database went away'));
  await started(2);
  expect(calls[1]!.through).toBe(11);
  calls[1]!.done();
  await compaction.idle();
});
