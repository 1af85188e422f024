/**
 * Quorum durability in cluster mode (issue 13) is PostgreSQL's synchronous replication. With a
 * synchronous standby connected, a quorum flush is answered once the commit returned (which
 * PostgreSQL holds until the standby has the WAL); with the standby gone, a quorum flush is never
 * answered as if the relay's own commit were a quorum: it times out as unavailable, and once the
 * relay has asked the database again (every 5 s at most) it is refused at once, saying why.
 *
 * A file of its own: it makes the suite's server synchronous (server-wide settings).
 */
import { afterAll, expect, it } from 'vitest';
import pg from 'pg';
import { pino } from 'pino';
import WebSocket from 'ws';
import { createClient, type WebSocketConstructor } from '@capsync/client';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { describePostgres } from '../support/describe-postgres.js';
import { codeOf } from '../support/error-code.js';
import type { PostgresCluster } from '../support/postgres-cluster.js';
import { startRelay } from '../support/relay-fixture.js';

async function sql<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/** Asks `check` again until it answers (the database's replication state has no event to wait for). */
async function waitFor(check: () => Promise<true | undefined>, what: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** What the primary and the last flush say, for a failure to show why a quorum was not answered. */
async function diagnose(url: string, flush: Promise<void>): Promise<string> {
  const outcome = await flush.then(() => 'answered', (err: Error & { code?: string }) => `${err.code}: ${err.message}`);
  const replication = await sql(url, 'SELECT application_name, state, sync_state, sent_lsn, replay_lsn FROM pg_stat_replication').catch((err: Error) => err.message);
  const activity = await sql(url, "SELECT pid, state, wait_event_type, wait_event, left(query, 80) AS query FROM pg_stat_activity WHERE datname = current_database()").catch((err: Error) => err.message);
  return `last flush: ${outcome}\npg_stat_replication: ${JSON.stringify(replication)}\npg_stat_activity: ${JSON.stringify(activity, null, 1)}`;
}

describePostgres('quorum durability on a cluster relay: synchronous replication', (server) => {
  let standby: PostgresCluster | null = null;
  afterAll(async () => {
    await standby?.close();
  });

  it('a quorum flush is answered with a synchronous standby connected; without it, never answered as a quorum, then refused at once', async () => {
    const url = await server().createDatabase();
    standby = await server().startStandby();
    await sql(url, "ALTER SYSTEM SET synchronous_standby_names = '*'");
    await sql(url, 'SELECT pg_reload_conf()');
    await waitFor(
      async () => (await sql<{ n: string }>(url, "SELECT count(*) AS n FROM pg_stat_replication WHERE sync_state = 'sync'"))[0]!.n === '1' || undefined,
      'the standby to be synchronous',
      30_000,
    );

    // The relay's log, for a failure to print.
    const logs: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
    const relay = await startRelay({ postgres: url, postgresTimeoutMs: 2_000, logger });
    const relayDocState = async (): Promise<unknown> => {
      const d = (await relay.relay.registry.peek('replicated')) as unknown as { replication: { appliedSeq: number; localDurableSeq: number }; appends: { inFlight: number }; paused: boolean } | undefined;
      return d && { applied: d.replication.appliedSeq, localDurable: d.replication.localDurableSeq, inFlight: d.appends.inFlight, paused: d.paused };
    };
    const client = createClient({ url: relay.url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS });
    try {
      const h = await client.open('replicated');
      await h.whenSynced({ timeoutMs: 10_000 });
      h.doc.getText('t').insert(0, 'on two servers');
      await h.flush({ durability: 'quorum', timeoutMs: 10_000 });
      // The standby has it: it was committed with synchronous replication.
      const onStandby = await sql<{ n: string }>(standby.url(new URL(url).pathname.slice(1)), 'SELECT count(*) AS n FROM capsync_doc_updates');
      expect(Number(onStandby[0]!.n)).toBeGreaterThan(0);

      await standby.stop();
      h.doc.getText('t').insert(0, 'only on the primary? ');
      // COMMIT now waits for a standby that is gone: no ack, no quorum ack.
      expect(await codeOf(h.flush({ durability: 'quorum', timeoutMs: 3_000 }))).toBe('unavailable');
      // Once the relay asked again (its answer is kept 5 s), refused at once, saying why.
      await waitFor(
        async () => {
          const started = performance.now();
          const code = await codeOf(h.flush({ durability: 'quorum', timeoutMs: 1_500 }));
          return (code === 'quorum-unsupported' && performance.now() - started < 1_000) || undefined;
        },
        'a quorum flush refused at once',
        20_000,
      );
      await expect(h.flush({ durability: 'quorum', timeoutMs: 3_000 })).rejects.toThrow(/no synchronous standby .* is connected/);

      // The standby back: commits return, and a quorum flush is answered again.
      await standby.start();
      await h.flush({ durability: 'quorum', timeoutMs: 30_000 }).catch(async () => {
        // The refusal may still be kept for up to 5 s after the standby reconnected.
        await waitFor(async () => (await h.flush({ durability: 'quorum', timeoutMs: 3_000 }).then(() => true, () => false)) || undefined, 'quorum answered again', 30_000).catch(async (err: Error) => {
          throw new Error(`${err.message}\n${await diagnose(url, h.flush({ durability: 'quorum', timeoutMs: 3_000 }))}\nrelay flush: ${await h.flush({ durability: 'relay', timeoutMs: 3_000 }).then(() => 'ok', (e: Error) => e.message)} relay doc ${JSON.stringify(await relayDocState())} status ${h.status} pending ${h.pending} text ${h.doc.getText('t').toString()}\nrelay log:\n${logs.slice(-60).join('')}\nstandby ${standby!.logTail(3_000)}\nprimary ${server().logTail(3_000)}`);
        });
      });
    } finally {
      await client.close();
      await relay.dispose();
      await sql(url, "ALTER SYSTEM SET synchronous_standby_names = ''");
      await sql(url, 'SELECT pg_reload_conf()');
    }
  }, 120_000);
});
