import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { StorageError, type AppendResult, type ClientClaimConflict, type DocStore, type StoredDoc } from '@capsync/core';
import { redactUrl } from '../auth/url-token.js';
import { PostgresPreviews, type PreviewOutcome } from './postgres-previews.js';
import { CHANGE_CHANNEL_SQL, claimsNoteSql, insertBatch, MAX_BATCH, MAX_BATCH_BYTES, type PendingAppend } from './postgres-append.js';
import { closedError, storageError } from './postgres-errors.js';
import { PostgresWebhookQueue } from './postgres-webhook-queue.js';
import { PostgresChangeFeed } from './postgres-change-feed.js';
import { migrate } from './postgres-schema.js';
import type { ChangeFollower, DocChanges, SharedDocStore } from './shared-doc-store.js';

export interface PostgresDocStoreOptions {
  /** Connections of the pool. Default 10. */
  poolSize?: number;
  /** How long to wait for a connection before the operation fails with StorageError. Default 5000 ms. */
  connectTimeoutMs?: number;
  /**
   * How long a statement may go unanswered before it fails with StorageError and its connection
   * is dropped. Default 10000 ms. Without it a database that stops answering (frozen host, lost
   * packets) would hold every later write, and shutdown, forever. A write that timed out may
   * still commit on the server: the relay then has not acknowledged something it stored, which
   * a resend makes harmless (applying a Yjs update twice changes nothing).
   */
  queryTimeoutMs?: number;
  /** Told when the connection that listens to the cluster's notes is up (true) or lost (false); see `follow`. */
  onListening?: (up: boolean) => void;
  /** Told what became of previews (`preview`), for the relay's metrics. */
  onPreviews?: (outcome: PreviewOutcome, updates: number) => void;
}

// Over ~400 lines (2026-12-07): the DocStore contract on PostgreSQL plus the two reads only a
// shared store has (changesAfter, synchronousReplication), each with the reasoning its SQL needs.
// The cluster reads and the quorum check are the next to move into a module of their own.
/**
 * A `DocStore` on PostgreSQL (node-postgres, one pool). Documents live in the tables of
 * postgres-schema.ts, created or migrated when the store opens.
 *
 * Every write is one transaction (a batch of appends or a claim one statement, a compaction or a
 * delete a few between BEGIN and COMMIT): a write resolves only after COMMIT (with the server's
 * default `synchronous_commit = on`, after the WAL is flushed), and a failed one changed nothing.
 *
 * Writes of one store run one at a time, in call order (the write chain): appends to one
 * document keep their call order in positions, a client id claim commits before any append
 * called after it (as does a delete or a compaction), and `close` finds every write finished.
 * Appends use group commit as the SQLite store does: consecutive appends, those of one
 * event-loop turn and any made while earlier writes ran, go into one statement (postgres-append.ts), and each
 * resolves once it committed. Any other write called meanwhile closes the batch, so what is
 * called after it is committed after it.
 *
 * Reads go straight to the pool and see what committed before them. Several stores (relays) may
 * share one database: positions are per document and assigned in commit order (the document's
 * row in capsync_docs is locked by every append; postgres-append.ts has the reasoning), so a
 * reader that has seen a document through position P finds every later change after P
 * (`changesAfter`), and a compaction through a head it read drops nothing it did not see. How a
 * relay learns of another's writes is `follow` (LISTEN/NOTIFY on a connection of its own,
 * PostgresChangeFeed); what it does with them is the relay's (ClusterFollower).
 *
 * A database that is down or failing makes every call reject with `StorageError` (never throw
 * synchronously, never crash the process); the pool reconnects by itself once it is back.
 */
export class PostgresDocStore implements SharedDocStore {
  /** The batch later appends join; null once its INSERT began or another write was called. */
  private open: PendingAppend[] | null = null;
  /** Bytes of the updates in `open`. */
  private openBytes = 0;
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;

  /** Marks this store's own commits in their notes (see PostgresChangeFeed). */
  private readonly origin = randomUUID();
  /** Listens to the notes of the followed documents; opened by the first `follow`. */
  private feed: Promise<PostgresChangeFeed> | null = null;
  private readonly previews: PostgresPreviews;

  private constructor(
    private readonly pool: pg.Pool,
    /** The database URL with its password redacted, for messages and logs. */
    readonly where: string,
    private readonly url: string,
    private readonly options: PostgresDocStoreOptions,
  ) {
    this.previews = new PostgresPreviews(pool, this.origin, options.onPreviews);
    this.webhooks = new PostgresWebhookQueue(pool);
  }

  /** The webhook outbox in the same database, shared by the cluster's relays. */
  readonly webhooks: PostgresWebhookQueue;

  /**
   * Connects to the database at `url` (postgres://user:password@host:port/database), creates or
   * migrates the schema, and resolves with the store. Rejects with `StorageError` when the
   * database cannot be reached, and `SchemaVersionError` when a newer capsync migrated it.
   */
  static async open(url: string, options: PostgresDocStoreOptions = {}): Promise<PostgresDocStore> {
    const where = redactUrl(url);
    const pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      query_timeout: options.queryTimeoutMs ?? 10_000,
      // The server gives up too: a read or write the relay stopped waiting for stops running,
      // and a transaction whose relay went silent half-way (a compaction when the link is cut)
      // ends and lets go of the document's row lock, which every relay's appends need.
      statement_timeout: options.queryTimeoutMs ?? 10_000,
      idle_in_transaction_session_timeout: options.queryTimeoutMs ?? 10_000,
      // Detects a database host that vanished without closing the connection.
      keepAlive: true,
    });
    // An idle connection the server ends (restart, admin kill) is reported here; unhandled it
    // would crash the process. The pool drops it, and the next query opens a new one.
    pool.on('error', () => {});
    try {
      const client = await pool.connect();
      const unhandled = guardCheckedOut(client);
      try {
        await migrate(client);
      } finally {
        unhandled();
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => {});
      if (err instanceof StorageError) throw err;
      throw new StorageError(`cannot open PostgreSQL database ${where}: ${(err as Error).message}`, { cause: err });
    }
    return new PostgresDocStore(pool, where, url, options);
  }

  async list(): Promise<string[]> {
    this.assertOpen();
    const { rows } = await this.query<{ doc: string }>('list', 'SELECT doc FROM capsync_doc_snapshots UNION SELECT doc FROM capsync_doc_updates');
    return rows.map((r) => r.doc);
  }

  /**
   * One statement, so snapshot, log and head are read from one consistent view (a compaction
   * or append committing meanwhile is seen whole or not at all). `head` is the document's head
   * in that view: every entry up to it is in `updates` (or merged into the snapshot there;
   * postgres-append.ts has why), so compacting through it drops nothing this load did not
   * return. After a delete the head stays (positions are never reused) while `updates` is empty.
   */
  async load(name: string): Promise<StoredDoc> {
    this.assertOpen();
    const { rows } = await this.query<{ kind: number; pos: string; data: Buffer | null }>(
      'load',
      `SELECT 0 AS kind, through AS pos, data FROM capsync_doc_snapshots WHERE doc = $1
       UNION ALL
       SELECT 1, pos, data FROM capsync_doc_updates WHERE doc = $1
       UNION ALL
       SELECT 2, head, NULL FROM capsync_docs WHERE doc = $1
       UNION ALL
       SELECT 3, incarnation, NULL FROM capsync_docs WHERE doc = $1
       ORDER BY kind, pos`,
      [name],
    );
    const updates: Uint8Array[] = [];
    let head = 0;
    let logCount = 0;
    let logBytes = 0;
    let incarnation = 0;
    for (const row of rows) {
      if (row.kind === 3) {
        incarnation = Number(row.pos);
        continue;
      }
      head = Math.max(head, Number(row.pos));
      if (row.data === null) continue;
      updates.push(toBytes(row.data));
      if (row.kind === 0) continue;
      logCount += 1;
      logBytes += row.data.byteLength;
    }
    return { updates, head, logCount, logBytes, incarnation };
  }

  /**
   * The catch-up read of a cluster relay: the entries of `name` after `position`, in order, at
   * most `limit` of them and at most `maxBytes` in all (but at least one), with their positions; and first the snapshot instead of the entries it
   * replaced, when `position` is before its `through`. One statement (one consistent view).
   *
   * A reader that applies what it gets and asks again after the last position it got (or after
   * `through`, or after `head` when nothing came) sees every entry of the document exactly once,
   * in position order, without gaps, whatever commits concurrently: an entry committed later
   * gets a position above the head of this read (postgres-append.ts). Not part of `DocStore`:
   * only a store several relays share needs it.
   */
  async changesAfter(name: string, position: number, limit = 1_000, maxBytes = 8 * 1024 * 1024): Promise<DocChanges> {
    this.assertOpen();
    // The entries are picked by their sizes first (octet_length reads a stored value's header,
    // not its bytes): at most `limit` of them and `maxBytes` in all, but always the first one.
    const { rows } = await this.query<{ kind: number; pos: string; data: Buffer | null }>(
      'changesAfter',
      `WITH picked AS (
         SELECT pos FROM (
           SELECT pos, sum(octet_length(data)) OVER (ORDER BY pos) - octet_length(data) AS before
           FROM capsync_doc_updates WHERE doc = $1 AND pos > $2 ORDER BY pos LIMIT $3) w
         WHERE before < $4 OR before = 0)
       SELECT 0 AS kind, through AS pos, data FROM capsync_doc_snapshots WHERE doc = $1 AND through > $2
       UNION ALL
       SELECT 1, u.pos, u.data FROM capsync_doc_updates u JOIN picked p ON u.doc = $1 AND u.pos = p.pos
       UNION ALL
       SELECT 2, head, NULL FROM capsync_docs WHERE doc = $1
       UNION ALL
       SELECT 3, incarnation, NULL FROM capsync_docs WHERE doc = $1
       ORDER BY kind, pos`,
      [name, position, limit, maxBytes],
    );
    const result: DocChanges = { changes: [], head: 0, incarnation: 0 };
    for (const row of rows) {
      const pos = Number(row.pos);
      if (row.kind === 3) result.incarnation = pos;
      else if (row.kind === 0) result.snapshot = { data: toBytes(row.data!), through: pos };
      else if (row.kind === 1) result.changes.push({ position: pos, update: toBytes(row.data!) });
      else result.head = pos;
    }
    return result;
  }

  /**
   * Follows the commits to `name` of every relay on this database (SharedDocStore.follow), through
   * LISTEN/NOTIFY on one connection of this store's own (PostgresChangeFeed), opened on first use.
   * Rejects with StorageError when that connection cannot be opened.
   */
  async follow(name: string, follower: ChangeFollower): Promise<() => void> {
    this.assertOpen();
    const heartbeatMs = Math.min(5_000, (this.options.queryTimeoutMs ?? 10_000) / 2);
    this.feed ??= PostgresChangeFeed.open({ connectionString: this.url, connectionTimeoutMillis: this.options.connectTimeoutMs ?? 5_000, keepAlive: true }, this.origin, heartbeatMs).then(
      (feed) => {
        const report = this.options.onListening;
        if (report) {
          report(true);
          feed.on('connected', report);
        }
        return feed;
      },
    );
    let feed: PostgresChangeFeed;
    try {
      feed = await this.feed;
    } catch (err) {
      this.feed = null;
      throw storageError('listen', err);
    }
    return feed.follow(name, follower);
  }

  /** The listening connection, once `follow` opened it (for its `connected` events). */
  get changeFeed(): Promise<PostgresChangeFeed> | null {
    return this.feed;
  }

  /** See SharedDocStore.preview and PostgresPreviews. */
  preview(name: string, update: Uint8Array): void {
    this.previews.add(name, update);
  }

  append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult> {
    if (this.closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      if (this.open && this.openBytes + update.byteLength > MAX_BATCH_BYTES) this.open = null;
      const batch = this.open ?? this.openBatch();
      batch.push({ name, update, incarnation, resolve, reject });
      this.openBytes += update.byteLength;
      if (batch.length >= MAX_BATCH) this.open = null;
    });
  }

  /**
   * Starts a batch and puts its INSERT on the write chain. The INSERT waits at least for the end
   * of the turn the batch began in, so the turn's other appends join it; a lone append is
   * written on the next turn, not delayed further.
   */
  private openBatch(): PendingAppend[] {
    const batch: PendingAppend[] = [];
    let turnEnded = false;
    setImmediate(() => (turnEnded = true));
    void this.write(async () => {
      if (!turnEnded) await new Promise((resolve) => setImmediate(resolve));
      if (this.open === batch) this.open = null;
      await insertBatch(this.pool, batch, this.origin);
    }).catch(() => {});
    // After write(), which closes any open batch.
    this.open = batch;
    this.openBytes = 0;
    return batch;
  }

  /**
   * One transaction. It first locks the document's row (as appends do, so it waits for an
   * append in flight and the log's size it keeps stays exact), creating it when missing and
   * raising the head to `through` if below, so later positions stay above the snapshot. Then the
   * snapshot is replaced only when `through` is past the stored one (two relays may compact the
   * same document; the later view wins), and the log is trimmed only then, up to `through`.
   *
   * Why this never drops an update the snapshot lacks, with other relays appending: the caller
   * guarantees the snapshot holds every entry up to `through`. It can, because positions are
   * assigned in commit order: a `through` at most the head of a `load` (or of a `changesAfter`
   * followed without gaps) means every entry up to it was in what that read returned
   * (postgres-append.ts). Entries committed since have higher positions and stay. (With a
   * sequence, a row with a lower id could commit after the read: deleted unseen.)
   */
  async compact(name: string, snapshot: Uint8Array, through: number, incarnation?: number): Promise<void> {
    this.assertOpen();
    await this.write(() =>
      this.transaction('compact', async (client) => {
        const { rows } = await client.query<{ incarnation: string }>(
          `INSERT INTO capsync_docs AS d (doc, head, log_count, log_bytes)
           VALUES ($1, greatest($2::bigint, coalesce((SELECT floor FROM capsync_doc_position_floor), 0)), 0, 0)
           ON CONFLICT (doc) DO UPDATE SET head = greatest(d.head, $2::bigint)
           RETURNING incarnation`,
          [name, through],
        );
        // Checked under the row's lock, which a delete takes too: a compaction of a deleted
        // incarnation changes nothing (the head raise above is harmless: positions only grow).
        if (incarnation !== undefined && Number(rows[0]!.incarnation) !== incarnation) return;
        await client.query(
          `WITH snap AS (
             INSERT INTO capsync_doc_snapshots (doc, through, data) VALUES ($1, $2, $3)
             ON CONFLICT (doc) DO UPDATE SET through = excluded.through, data = excluded.data
               WHERE capsync_doc_snapshots.through < excluded.through
             RETURNING through),
           gone AS (DELETE FROM capsync_doc_updates WHERE doc = $1 AND pos <= (SELECT through FROM snap) RETURNING octet_length(data) AS bytes)
           UPDATE capsync_docs SET log_count = log_count - (SELECT count(*) FROM gone),
             log_bytes = log_bytes - (SELECT coalesce(sum(bytes), 0) FROM gone)
           WHERE doc = $1`,
          [name, through, Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength)],
        );
      }),
    );
  }

  /**
   * On the write chain, so committed before any append called after it; noted to the relays that
   * follow the document (postgres-append.ts, `claimsNoteSql`). The no-op DO UPDATE
   * (instead of DO NOTHING) makes RETURNING give the row that holds each id, also one another
   * relay committed after this statement began, so a lost race is reported as a conflict.
   */
  async claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    this.assertOpen();
    // One statement may not touch a row twice (ON CONFLICT DO UPDATE): claim each id once. In
    // ascending order, the order the rows are locked in: two relays' claims never deadlock.
    const ids = [...new Set(clientIds)].sort((a, b) => a - b);
    if (ids.length === 0) return [];
    const { rows } = await this.write(() =>
      this.query<{ client: string; owner: string }>(
        'claimClients',
        `WITH claimed AS (
           INSERT INTO capsync_doc_client_owners (doc, client, owner) SELECT $1, c, $2 FROM unnest($3::bigint[]) WITH ORDINALITY AS t (c, o) ORDER BY o
           ON CONFLICT (doc, client) DO UPDATE SET owner = capsync_doc_client_owners.owner
           RETURNING client, owner),
         note AS (${claimsNoteSql})
         SELECT client, owner, (SELECT count(*) FROM note) AS noted FROM claimed`,
        [name, owner, ids.map(String), this.origin],
      ),
    );
    return rows.filter((r) => r.owner !== owner).map((r) => ({ clientId: Number(r.client), owner: r.owner }));
  }

  async loadClientOwners(name: string): Promise<[number, string][]> {
    this.assertOpen();
    const { rows } = await this.query<{ client: string; owner: string }>(
      'loadClientOwners',
      'SELECT client, owner FROM capsync_doc_client_owners WHERE doc = $1',
      [name],
    );
    return rows.map((r): [number, string] => [Number(r.client), r.owner]);
  }

  /**
   * One transaction that first locks the document's row, as compactions and appends do, and
   * raises its incarnation there (creating the row when missing): an append waiting for that
   * lock then finds the new incarnation and is refused unless it was made for it
   * (postgres-append.ts). The row stays, with its head, so positions are never reused; the
   * log's size becomes 0. The relays that follow the document get a `deleted` note at COMMIT
   * (they drop their copy and close its sessions, ClusterFollower); one that missed it learns
   * the new incarnation from its next catch-up read (`changesAfter`).
   */
  async delete(name: string): Promise<number> {
    this.assertOpen();
    return this.write(() =>
      this.transaction('delete', async (client) => {
        const { rows } = await client.query<{ incarnation: string }>(
          `INSERT INTO capsync_docs AS d (doc, head, log_count, log_bytes, incarnation)
           VALUES ($1, coalesce((SELECT floor FROM capsync_doc_position_floor), 0), 0, 0, 1)
           ON CONFLICT (doc) DO UPDATE SET log_count = 0, log_bytes = 0, incarnation = d.incarnation + 1
           RETURNING incarnation`,
          [name],
        );
        const incarnation = Number(rows[0]!.incarnation);
        await client.query(
          `WITH owners AS (DELETE FROM capsync_doc_client_owners WHERE doc = $1),
                log AS (DELETE FROM capsync_doc_updates WHERE doc = $1)
           DELETE FROM capsync_doc_snapshots WHERE doc = $1`,
          [name],
        );
        await client.query(
          `SELECT pg_notify(${CHANGE_CHANNEL_SQL('$1')}, json_build_object('o', $2::text, 'd', $1::text, 'k', 'deleted', 'i', $3::bigint)::text)`,
          [name, this.origin, incarnation],
        );
        return incarnation;
      }),
    );
  }

  /**
   * Quorum durability in a cluster is PostgreSQL's synchronous replication: a COMMIT returns
   * only once a synchronous standby has the WAL. That needs `synchronous_standby_names` set, a
   * `synchronous_commit` that waits for it (on, remote_write, remote_apply), and a standby that
   * is connected as synchronous now: with none connected, commits would wait for one forever.
   */
  async synchronousReplication(): Promise<string | null> {
    this.assertOpen();
    // A role without pg_read_all_stats (pg_monitor) sees the standbys' rows with their state null.
    const { rows } = await this.query<{ names: string; commit: string; standbys: string; hidden: string }>(
      'synchronousReplication',
      `SELECT current_setting('synchronous_standby_names') AS names, current_setting('synchronous_commit') AS commit,
         (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')) AS standbys,
         (SELECT count(*) FROM pg_stat_replication WHERE sync_state IS NULL) AS hidden`,
    );
    const { names, commit, standbys, hidden } = rows[0]!;
    if (names.trim() === '') return `the relays' PostgreSQL (${this.where}) has no synchronous standby (synchronous_standby_names is empty): quorum durability cannot be given; flush with durability 'relay', or configure synchronous replication`;
    if (commit === 'off' || commit === 'local') return `the relays' PostgreSQL (${this.where}) commits without waiting for its standbys (synchronous_commit = ${commit}): quorum durability cannot be given`;
    if (Number(standbys) === 0 && Number(hidden) > 0) return `the relays' database role cannot see whether a standby of PostgreSQL (${this.where}) is synchronous: grant it pg_monitor (GRANT pg_monitor TO <role>) for quorum durability`;
    if (Number(standbys) === 0) return `no synchronous standby of the relays' PostgreSQL (${this.where}) is connected now: quorum durability cannot be given`;
    return null;
  }

  /** Connections of the pool checked out now (the metric capsync_storage_pool_in_use). */
  get poolInUse(): number {
    return this.pool.totalCount - this.pool.idleCount;
  }

  async ping(): Promise<void> {
    this.assertOpen();
    await this.query('ping', 'SELECT 1');
  }

  /** Commits the appends called before it, waits for every write, then closes the pool. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.previews.close();
    // The open batch's INSERT is on the chain already.
    await this.writes.catch(() => {});
    await (await this.feed?.catch(() => null))?.close();
    await this.pool.end();
  }

  /**
   * Runs `fn` after every write called before it has settled, and closes the open batch of
   * appends: appends called after this write are committed after it. A failed write does not
   * stop the chain; its caller gets the error.
   */
  private write<T>(fn: () => Promise<T>): Promise<T> {
    this.open = null;
    const result = this.writes.then(fn);
    this.writes = result.catch(() => {});
    return result;
  }

  private assertOpen(): void {
    if (this.closed) throw closedError();
  }

  /**
   * Runs `fn` in a transaction on one connection: COMMIT when it resolves, ROLLBACK when it
   * throws (rejecting with StorageError). A connection whose ROLLBACK failed too is dropped.
   */
  private async transaction<T>(what: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw storageError(what, err);
    }
    const unhandled = guardCheckedOut(client);
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      unhandled();
      client.release();
      return result;
    } catch (err) {
      const broken = await client.query('ROLLBACK').then(
        () => undefined,
        (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
      );
      unhandled();
      client.release(broken);
      throw storageError(what, err);
    }
  }

  private async query<R extends pg.QueryResultRow>(what: string, text: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, params);
    } catch (err) {
      throw storageError(what, err);
    }
  }
}

/**
 * While a client is checked out of the pool, pg-pool stops listening to its 'error' event, and
 * a connection lost meanwhile (database restarted, link reset mid-transaction) emits one: with
 * no listener Node throws it, and the relay process exits. The statement in flight fails anyway
 * (a StorageError for the caller); this listener only keeps the event from crashing. Returns the
 * function that removes it, to call before the client goes back to the pool.
 */
function guardCheckedOut(client: pg.PoolClient): () => void {
  const ignore = (): void => {};
  client.on('error', ignore);
  return () => client.off('error', ignore);
}

/** A Uint8Array view of a bytea value (Yjs wants plain Uint8Arrays, not Buffers). */
function toBytes(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
