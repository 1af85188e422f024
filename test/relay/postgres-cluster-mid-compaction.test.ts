/**
 * Regressions found by the chaos cluster topology (issue 13): a relay's database link failing in
 * the middle of a compaction (a transaction: BEGIN, a statement that locks the document's row in
 * capsync_docs, a second statement, COMMIT).
 *
 * - Reset (or PostgreSQL dying, or restarting): the relay process exited. The compaction runs on
 *   a client checked out of the pool (`PostgresDocStore.transaction`); pg-pool removes its error
 *   listener from a checked-out client, and a pg Client emits 'error' when its connection ends
 *   unexpectedly, so the error was unhandled (chaos seed 5010: all three relays exited at a
 *   PostgreSQL SIGKILL). Fixed: the store listens while a client is checked out.
 * - Silent (held): its backend stayed "idle in transaction" holding that row lock, and every other
 *   relay of the cluster waited on it for each append to that document: none acknowledged anything
 *   for it until the link healed (in production, a blackholed link: until PostgreSQL's TCP
 *   keepalive notices, 2 h by default). Fixed: the pool's sessions set
 *   `idle_in_transaction_session_timeout` to `--postgres-timeout-ms`.
 */
import { afterEach, expect, it } from 'vitest';
import pg from 'pg';
import { describePostgres } from '../support/describe-postgres.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, tempDir } from '../support/relay-fixture.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';
import { withTimeout } from '../support/wait.js';

/** The compaction's first statement (appends never raise the head with greatest()). */
const COMPACTION_FIRST_STATEMENT = 'greatest($2::bigint';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describePostgres('a cluster relay cut from the database mid-compaction', (server) => {
  it('a link reset mid-compaction: the relay process survives it', async () => {
    const url = await server().createDatabase();
    const proxy = await FaultProxy.start(server().port, { name: 'relay→db' });
    cleanups.push(() => proxy.close());
    let resetAt: number | null = null;
    proxy.on('read', (_conn, dir, chunk) => {
      if (resetAt === null && dir === 'up' && chunk.includes(COMPACTION_FIRST_STATEMENT)) {
        proxy.setMode('reset');
        resetAt = performance.now();
        setTimeout(() => proxy.setMode('pass'), 200);
      }
    });
    const data = tempDir('capsync-mid-compaction-');
    const relay = await spawnRelay(['--postgres', url.replace(`:${server().port}/`, `:${proxy.port}/`), '--data', data.dir, '--postgres-timeout-ms', '1000', '--compact-updates', '5']);
    cleanups.push(() => data.remove(), () => killRelay(relay));
    const client = await ProtocolClient.synced(`${relay.url}/doc`);
    cleanups.push(() => client.close());
    for (let i = 0; i < 10 && resetAt === null; i++) await client.waitForAck(client.type(`<${i}>`), 10_000).catch(() => {});
    expect(resetAt, 'the relay compacted the document').not.toBeNull();
    const exited = await withTimeout(relay.exited, 3_000, 'exit').then(
      (e) => `exited (code ${e.code}, signal ${e.signal}): ${relay.stderr().slice(-600)}`,
      () => null,
    );
    expect(exited, 'the relay process is still running 3 s after the reset').toBeNull();
  }, 60_000);

  it('does not stop the other relays from acknowledging writes to that document', async () => {
    const url = await server().createDatabase();
    const proxy = await FaultProxy.start(server().port, { name: 'A→db' });
    cleanups.push(() => proxy.close());
    let heldAt: number | null = null;
    proxy.on('read', (_conn, dir, chunk) => {
      if (heldAt === null && dir === 'up' && chunk.includes(COMPACTION_FIRST_STATEMENT)) {
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
