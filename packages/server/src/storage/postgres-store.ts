import pg from 'pg';
import { StorageError, type AppendResult, type ClientClaimConflict, type DocStore, type StoredDoc } from '@capsync/core';
import { redactUrl } from '../auth/url-token.js';
import { migrate } from './postgres-schema.js';

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
}

interface PendingAppend {
  name: string;
  update: Uint8Array;
  resolve(result: AppendResult): void;
  reject(err: unknown): void;
}

/**
 * Appends of one batch, at most: a multi-row INSERT carries two parameters per row and a
 * statement takes at most 65,535. Past it the next append starts another batch.
 */
const MAX_BATCH = 4_000;

/**
 * A `DocStore` on PostgreSQL (node-postgres, one pool). Documents live in the tables of
 * postgres-schema.ts, created or migrated when the store opens.
 *
 * Every write is one statement, so PostgreSQL runs it as one transaction and commits it before
 * answering: a write resolves only after COMMIT (with the server's default
 * `synchronous_commit = on`, after the WAL is flushed), and a failed one changed nothing.
 *
 * Writes of one store run one at a time, in call order (the write chain): appends to one
 * document keep their call order in positions, a client id claim commits before any append
 * called after it (as does a delete or a compaction), and `close` finds every write finished.
 * Appends use group commit as the SQLite store does: consecutive appends, those of one
 * event-loop turn and any made while earlier writes ran, go into one multi-row INSERT, and each
 * resolves once it committed. Any other write called meanwhile closes the batch, so what is
 * called after it is committed after it.
 *
 * Reads go straight to the pool and see what committed before them. Several stores (relays) may
 * share one database: positions come from one sequence, so they never collide; how a relay
 * learns of another's writes is the cluster's business, not this store's.
 *
 * A database that is down or failing makes every call reject with `StorageError` (never throw
 * synchronously, never crash the process); the pool reconnects by itself once it is back.
 */
export class PostgresDocStore implements DocStore {
  /** The batch later appends join; null once its INSERT began or another write was called. */
  private open: PendingAppend[] | null = null;
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    /** The database URL with its password redacted, for messages and logs. */
    readonly where: string,
  ) {}

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
      // Detects a database host that vanished without closing the connection.
      keepAlive: true,
    });
    // An idle connection the server ends (restart, admin kill) is reported here; unhandled it
    // would crash the process. The pool drops it, and the next query opens a new one.
    pool.on('error', () => {});
    try {
      const client = await pool.connect();
      try {
        await migrate(client);
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => {});
      if (err instanceof StorageError) throw err;
      throw new StorageError(`cannot open PostgreSQL database ${where}: ${(err as Error).message}`, { cause: err });
    }
    return new PostgresDocStore(pool, where);
  }

  async list(): Promise<string[]> {
    this.assertOpen();
    const { rows } = await this.query<{ doc: string }>('list', 'SELECT doc FROM capsync_doc_snapshots UNION SELECT doc FROM capsync_doc_updates');
    return rows.map((r) => r.doc);
  }

  /**
   * One statement, so snapshot and log are read from one consistent view (a compaction
   * committing meanwhile is seen whole or not at all).
   */
  async load(name: string): Promise<StoredDoc> {
    this.assertOpen();
    const { rows } = await this.query<{ snapshot: boolean; id: string; data: Buffer }>(
      'load',
      `SELECT true AS snapshot, through AS id, data FROM capsync_doc_snapshots WHERE doc = $1
       UNION ALL
       SELECT false, id, data FROM capsync_doc_updates WHERE doc = $1
       ORDER BY snapshot DESC, id`,
      [name],
    );
    const updates: Uint8Array[] = [];
    let head = 0;
    let logCount = 0;
    let logBytes = 0;
    for (const row of rows) {
      updates.push(toBytes(row.data));
      head = Math.max(head, Number(row.id));
      if (row.snapshot) continue;
      logCount += 1;
      logBytes += row.data.byteLength;
    }
    return { updates, head, logCount, logBytes };
  }

  append(name: string, update: Uint8Array): Promise<AppendResult> {
    if (this.closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      const batch = this.open ?? this.openBatch();
      batch.push({ name, update, resolve, reject });
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
      await this.insert(batch);
    }).catch(() => {});
    // After write(), which closes any open batch.
    this.open = batch;
    return batch;
  }

  /** Writes `batch` as one multi-row INSERT (one transaction) and settles its promises. */
  private async insert(batch: PendingAppend[]): Promise<void> {
    const params: unknown[] = [];
    const values = batch.map((item) => {
      params.push(item.name, Buffer.from(item.update.buffer, item.update.byteOffset, item.update.byteLength));
      return `($${params.length - 1}, $${params.length})`;
    });
    const docs = [...new Set(batch.map((item) => item.name))];
    params.push(docs);
    let rows: { doc: string; id: string | null; n: string | null; bytes: string | null }[];
    try {
      // The SELECT of the log's size runs on the statement's snapshot, which does not include
      // the rows it inserts: those are counted forward below.
      ({ rows } = await this.pool.query(
        `WITH ins AS (INSERT INTO capsync_doc_updates (doc, data) VALUES ${values.join(', ')} RETURNING id, doc)
         SELECT doc, id, NULL::bigint AS n, NULL::bigint AS bytes FROM ins
         UNION ALL
         SELECT doc, NULL, count(*), coalesce(sum(octet_length(data)), 0)
           FROM capsync_doc_updates WHERE doc = ANY($${params.length}) GROUP BY doc`,
        params,
      ));
    } catch (err) {
      const error = storageError('append', err);
      for (const item of batch) item.reject(error);
      return;
    }
    // Rows get their sequence values in VALUES order, so the ids in ascending order are the
    // batch's positions in order (RETURNING itself promises no order).
    const ids = rows
      .filter((r) => r.id !== null)
      .map((r) => Number(r.id))
      .sort((a, b) => a - b);
    const stats = new Map(docs.map((doc) => [doc, { n: 0, bytes: 0 }]));
    for (const r of rows) if (r.id === null) stats.set(r.doc, { n: Number(r.n), bytes: Number(r.bytes) });
    batch.forEach((item, i) => {
      const s = stats.get(item.name)!;
      s.n += 1;
      s.bytes += item.update.byteLength;
      item.resolve({ position: ids[i]!, logCount: s.n, logBytes: s.bytes });
    });
  }

  /**
   * One statement: the snapshot is replaced only when `through` is past the stored one (two
   * relays may compact the same document; the later view wins), and the log is trimmed only
   * then, up to `through`. Rows after `through` stay, whoever appended them.
   */
  async compact(name: string, snapshot: Uint8Array, through: number): Promise<void> {
    this.assertOpen();
    await this.write(() =>
      this.query(
        'compact',
        `WITH snap AS (
           INSERT INTO capsync_doc_snapshots (doc, through, data) VALUES ($1, $2, $3)
           ON CONFLICT (doc) DO UPDATE SET through = excluded.through, data = excluded.data
             WHERE capsync_doc_snapshots.through < excluded.through
           RETURNING through)
         DELETE FROM capsync_doc_updates WHERE doc = $1 AND id <= (SELECT through FROM snap)`,
        [name, through, Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength)],
      ),
    );
  }

  /**
   * On the write chain, so committed before any append called after it. The no-op DO UPDATE
   * (instead of DO NOTHING) makes RETURNING give the row that holds each id, also one another
   * relay committed after this statement began, so a lost race is reported as a conflict.
   */
  async claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    this.assertOpen();
    // One statement may not touch a row twice (ON CONFLICT DO UPDATE): claim each id once.
    const ids = [...new Set(clientIds)];
    if (ids.length === 0) return [];
    const { rows } = await this.write(() =>
      this.query<{ client: string; owner: string }>(
        'claimClients',
        `INSERT INTO capsync_doc_client_owners (doc, client, owner) SELECT $1, c, $2 FROM unnest($3::bigint[]) AS c
         ON CONFLICT (doc, client) DO UPDATE SET owner = capsync_doc_client_owners.owner
         RETURNING client, owner`,
        [name, owner, ids.map(String)],
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

  async delete(name: string): Promise<void> {
    this.assertOpen();
    await this.write(() =>
      this.query(
        'delete',
        `WITH owners AS (DELETE FROM capsync_doc_client_owners WHERE doc = $1),
              log AS (DELETE FROM capsync_doc_updates WHERE doc = $1)
         DELETE FROM capsync_doc_snapshots WHERE doc = $1`,
        [name],
      ),
    );
  }

  async ping(): Promise<void> {
    this.assertOpen();
    await this.query('ping', 'SELECT 1');
  }

  /** Commits the appends called before it, waits for every write, then closes the pool. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The open batch's INSERT is on the chain already.
    await this.writes.catch(() => {});
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

  private async query<R extends pg.QueryResultRow>(what: string, text: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, params);
    } catch (err) {
      throw storageError(what, err);
    }
  }
}

function closedError(): StorageError {
  return new StorageError('PostgreSQL store is closed');
}

function storageError(what: string, err: unknown): StorageError {
  return new StorageError(`PostgreSQL ${what} failed: ${(err as Error).message || String(err)}`, { cause: err, retryable: unreachable(err) });
}

/** Network errors of a connection to the database (Node's codes). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/**
 * SQLSTATEs of a database that cannot serve now but may soon: class 08 (connection exception),
 * admin/crash shutdown, starting up, too many connections.
 */
const UNAVAILABLE_STATES = new Set(['57P01', '57P02', '57P03', '53300']);

/**
 * Whether `err` says the database could not be reached (down, restarting, partitioned away,
 * frozen past the query timeout) rather than refused the statement: the relay then tries the
 * write again (StorageError.retryable) instead of reloading the document. A statement that timed
 * out may have committed after all; writing it again is harmless (a Yjs update applies once, a
 * client id's first claim wins).
 */
function unreachable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (NETWORK_CODES.has(code) || UNAVAILABLE_STATES.has(code) || code.startsWith('08')) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  // node-postgres's own errors for a lost, timed-out or refused connection carry no code.
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error/i.test(message);
}

/** A Uint8Array view of a bytea value (Yjs wants plain Uint8Arrays, not Buffers). */
function toBytes(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
