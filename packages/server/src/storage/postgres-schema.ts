import type pg from 'pg';
import { StorageError } from '@capsync/core';

/**
 * The PostgreSQL schema of capsync, as numbered migrations. Migration N (1-based) is
 * `MIGRATIONS[N - 1]`; once released, a migration is never edited, only followed by another.
 * Every relay applies the ones its database lacks at startup (`migrate`), and refuses a database
 * that has migrations it does not know (a newer capsync migrated it): it could not tell what
 * those changed, and writing through an older schema's assumptions could corrupt documents.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: documents. Positions are one bigserial for every document: strictly increasing within
  // each and never reused (a sequence never hands out a value twice, deletes or not).
  `
  CREATE TABLE capsync_doc_updates (
    id bigserial PRIMARY KEY,
    doc text NOT NULL,
    data bytea NOT NULL
  );
  CREATE INDEX capsync_doc_updates_by_doc ON capsync_doc_updates (doc, id);
  CREATE TABLE capsync_doc_snapshots (
    doc text PRIMARY KEY,
    through bigint NOT NULL,
    data bytea NOT NULL
  );
  CREATE TABLE capsync_doc_client_owners (
    doc text NOT NULL,
    client bigint NOT NULL,
    owner text NOT NULL,
    PRIMARY KEY (doc, client)
  );
  `,
  // 2: positions per document, assigned in commit order (see postgres-append.ts for why and
  // how). capsync_docs holds each document's head (its last position: the row every append
  // locks to number its rows) and the log's size, kept by the writes so an append need not
  // count the log. The row outlives a delete, so positions are never reused. Existing rows
  // keep their id as position (ids already increase within a document), so snapshots'
  // `through` and positions a relay still holds keep their meaning across the upgrade.
  // Documents new to capsync_docs (also one deleted before the upgrade) start after `floor`,
  // every id migration 1 handed out, so no position of before the upgrade comes back.
  // A relay of schema 1 still running appends without a position and fails (NOT NULL): stop
  // relays of schema 1 before starting one of schema 2.
  `
  CREATE TABLE capsync_docs (
    doc text PRIMARY KEY,
    head bigint NOT NULL,
    log_count bigint NOT NULL,
    log_bytes bigint NOT NULL
  );
  CREATE TABLE capsync_doc_position_floor (floor bigint NOT NULL);
  INSERT INTO capsync_doc_position_floor (floor)
    SELECT greatest(
      (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM capsync_doc_updates_id_seq),
      (SELECT coalesce(max(through), 0) FROM capsync_doc_snapshots));
  ALTER TABLE capsync_doc_updates ADD COLUMN pos bigint;
  UPDATE capsync_doc_updates SET pos = id;
  INSERT INTO capsync_docs (doc, head, log_count, log_bytes)
    SELECT doc, max(head), sum(n), sum(bytes) FROM (
      SELECT doc, max(pos) AS head, count(*) AS n, sum(octet_length(data)) AS bytes FROM capsync_doc_updates GROUP BY doc
      UNION ALL
      SELECT doc, through, 0, 0 FROM capsync_doc_snapshots
    ) AS known GROUP BY doc;
  ALTER TABLE capsync_doc_updates DROP COLUMN id;
  ALTER TABLE capsync_doc_updates ALTER COLUMN pos SET NOT NULL;
  ALTER TABLE capsync_doc_updates ADD PRIMARY KEY (doc, pos);
  `,
  // 3: the PostgreSQL lock authority (locks/postgres-lock-rows.ts). One row per lock key,
  // never deleted: `last_token` is the key's counter, the highest fencing token ever granted,
  // so tokens strictly increase and are never reused, across relays and restarts. The current
  // lease, if any, is the one of `last_token`: its identity and its expiry on the database's
  // clock (both NULL once it was released; an expired lease stays until the next grant
  // overwrites it). `released_token`: the last token released (not run out), so the relay
  // that granted a lease can tell one released through another relay from one that ran out.
  `
  CREATE TABLE capsync_locks (
    key text PRIMARY KEY,
    last_token bigint NOT NULL CHECK (last_token > 0),
    owner text,
    expires_at timestamptz,
    released_token bigint,
    CHECK ((owner IS NULL) = (expires_at IS NULL))
  );
  `,
  // 4: the webhook outbox (storage/postgres-webhook-queue.ts), shared by the relays of a cluster.
  // Times are milliseconds since the epoch on the relays' clocks. `seq` orders deliveries due at
  // the same time by when they were queued.
  `
  CREATE TABLE capsync_webhook_deliveries (
    id text PRIMARY KEY,
    seq bigserial NOT NULL,
    event_id text NOT NULL,
    url text NOT NULL,
    body text NOT NULL,
    created_at bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_at bigint NOT NULL
  );
  CREATE INDEX capsync_webhook_deliveries_due ON capsync_webhook_deliveries (next_at, seq);
  `,
  // 5: incarnations (DocStore: a counter per name that every delete raises; 0 until the first).
  // It lives on the document's capsync_docs row, the row every append and delete locks first,
  // so an append checks the incarnation it was made for under the same lock that a delete
  // raises it under: an append racing with a delete lands before it (and is deleted with the
  // rest) or is refused, never in the new incarnation's log (postgres-append.ts).
  `
  ALTER TABLE capsync_docs ADD COLUMN incarnation bigint NOT NULL DEFAULT 0;
  `,
];

/** The schema version this relay writes and understands: the number of migrations it has. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * The database was migrated by a newer capsync than this one: the relay refuses to use it.
 * A `StorageError` (code 'storage-failure'), so it is handled as any storage failure at startup.
 */
export class SchemaVersionError extends StorageError {
  constructor(
    readonly found: number,
    readonly supported: number,
  ) {
    super(
      `the PostgreSQL database has capsync schema version ${found}, newer than this relay understands (${supported}); ` +
        'upgrade capsync-server to the version that migrated it (a relay never writes through a schema it does not know)',
    );
    this.name = 'SchemaVersionError';
  }
}

/**
 * Any number of relays may start at once against one database: a transaction-scoped advisory
 * lock makes them migrate one after the other (the others then find nothing left to do), so no
 * two run `CREATE TABLE` concurrently. Its key is arbitrary but fixed for capsync.
 */
const MIGRATION_LOCK = 0x6361_7073; // 'caps'

/**
 * Creates the schema or brings it up to `SCHEMA_VERSION`, all in one transaction: a relay that
 * dies half way leaves the database as it was. Returns the version found before migrating (0
 * for an empty database). Throws `SchemaVersionError` for a newer database.
 */
export async function migrate(client: pg.ClientBase, migrations: readonly string[] = MIGRATIONS): Promise<number> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(`
      CREATE TABLE IF NOT EXISTS capsync_schema_migrations (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const { rows } = await client.query<{ version: number | null }>('SELECT max(version) AS version FROM capsync_schema_migrations');
    const found = rows[0]?.version ?? 0;
    if (found > migrations.length) throw new SchemaVersionError(found, migrations.length);
    for (let version = found + 1; version <= migrations.length; version++) {
      await client.query(migrations[version - 1]!);
      await client.query('INSERT INTO capsync_schema_migrations (version) VALUES ($1)', [version]);
    }
    await client.query('COMMIT');
    return found;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
