/**
 * Regression (found while building the chaos cluster topology, issue 13): a relay whose link to
 * the database goes silent in the middle of a compaction (its first statement, which locks the
 * document's row in capsync_docs, delivered; nothing after it) leaves its backend "idle in
 * transaction" holding that row lock. Every other relay of the cluster then waits on the lock for
 * each append to that document: none of them acknowledges anything for it until the link heals
 * (in production, a blackholed link: until PostgreSQL's TCP keepalive notices, 2 h by default).
 * The relays set no `idle_in_transaction_session_timeout`. Healthy relays must keep acknowledging.
 */
import { afterEach, expect, it } from 'vitest';
import pg from 'pg';
import { describePostgres } from '../support/describe-postgres.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay } from '../support/relay-fixture.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describePostgres('a cluster relay cut from the database mid-compaction', (server) => {
  it('does not stop the other relays from acknowledging writes to that document', async () => {
    const url = await server().createDatabase();
    const proxy = await FaultProxy.start(server().port, { name: 'A→db' });
    cleanups.push(() => proxy.close());
    // The compaction's first statement (appends never raise the head with greatest()).
    let heldAt: number | null = null;
    proxy.on('read', (_conn, dir, chunk) => {
      if (heldAt === null && dir === 'up' && chunk.includes('greatest($2::bigint')) {
        // Delivered already (the proxy passes it on before it reports the read): from now on nothing flows.
        proxy.setMode('hold');
        heldAt = performance.now();
      }
    });
    const a = await startRelay({ postgres: url.replace(`:${server().port}/`, `:${proxy.port}/`), postgresTimeoutMs: 1_000, compaction: { maxUpdates: 5 } });
    const b = await startRelay({ postgres: url, postgresTimeoutMs: 1_000 });
    cleanups.push(() => Promise.all([a.dispose(), b.dispose()]));
    const onA = await ProtocolClient.synced(a.docUrl('doc'));
    const onB = await ProtocolClient.synced(b.docUrl('doc'));
    cleanups.push(() => Promise.all([onA.close(), onB.close()]));

    for (let i = 0; i < 10 && heldAt === null; i++) await onA.waitForAck(onA.type(`<a${i}>`), 10_000).catch(() => {});
    expect(heldAt, 'relay A compacted the document').not.toBeNull();

    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    cleanups.push(() => admin.end());
    const idle = async () =>
      (await admin.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`)).rows[0]!.n;
    const seq = onB.type('<b while A is cut>');
    const acked = await onB.waitForAck(seq, 8_000).then(
      () => true,
      () => false,
    );
    const report = `backends idle in transaction: ${await idle()}`;
    // Healed: the lock goes with A's transaction, and B's write commits.
    proxy.setMode('pass');
    await onB.waitForAck(seq, 30_000);
    expect(acked, `B acknowledged its write within 8 s while A was cut mid-compaction (${report})`).toBe(true);
  }, 90_000);
});
