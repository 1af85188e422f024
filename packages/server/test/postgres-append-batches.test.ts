/**
 * The append statement on PostgreSQL takes a batch's updates as one binary parameter (review of
 * issue 13: as a bytea[] they travelled as hex text, one JavaScript string, which failed past
 * ~256 MiB: 17 updates of the default 16 MiB --max-message-bytes in one turn). And a batch of
 * many documents, empty updates and awkward names is stored in call order.
 */
import { expect, it } from 'vitest';
import { describePostgres } from '../../../test/support/describe-postgres.js';
import { PostgresDocStore } from '../src/storage/postgres-store.js';

describePostgres('PostgreSQL append batches', (server) => {
  it('stores one turn of 17 updates of 16 MiB each', async () => {
    const store = await PostgresDocStore.open(await server().createDatabase(), { queryTimeoutMs: 120_000 });
    try {
      const update = new Uint8Array(16 * 1024 * 1024).fill(7);
      const results = await Promise.allSettled(Array.from({ length: 17 }, (_, i) => store.append(`big-${i}`, update)));
      expect(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason).slice(0, 160))).toEqual([]);
      const loaded = await store.load('big-16');
      expect(loaded.updates.map((u) => u.byteLength)).toEqual([16 * 1024 * 1024]);
      expect(loaded.updates[0]![12_345]).toBe(7);
    } finally {
      await store.close();
    }
  }, 180_000);

  it('stores empty updates and many documents with awkward names in one batch, each in call order', async () => {
    const store = await PostgresDocStore.open(await server().createDatabase());
    try {
      const name = (i: number) => `doc-${i % 700}-'"\\{},ü`;
      const update = (i: number) => (i % 3 === 0 ? new Uint8Array(0) : new Uint8Array([i & 255, i >> 8, 2]));
      const results = await Promise.all(Array.from({ length: 4_500 }, (_, i) => store.append(name(i), update(i))));
      expect(results.length).toBe(4_500);
      const loaded = await store.load(name(1));
      const expected = Array.from({ length: 4_500 }, (_, i) => i).filter((i) => i % 700 === 1).map((i) => [...update(i)]);
      expect(loaded.updates.map((u) => [...u])).toEqual(expected);
    } finally {
      await store.close();
    }
  }, 60_000);
});
