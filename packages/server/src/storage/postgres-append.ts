import type pg from 'pg';
import { DocumentDeletedError, type AppendResult } from '@capsync/core';
import { storageError } from './postgres-errors.js';

function deletedError(name: string, incarnation: number): DocumentDeletedError {
  return new DocumentDeletedError(`document "${name}" was deleted (the append was made for incarnation ${incarnation})`);
}

/**
 * Group commit of appends on PostgreSQL, with positions per document assigned in commit order.
 *
 * Why not a sequence: sequence values are handed out when a row is inserted, not when it
 * commits, so with several writers (relays, or transactions of one) a row with a lower value can
 * commit after one with a higher value was read. A reader that saw position 10 and asks for what
 * came after it would skip 9 forever, and a compaction through 10 would delete 9 without having
 * it in its snapshot: an acknowledged update lost.
 *
 * So every document has a row in capsync_docs with its `head`, its last position. An append
 * transaction raises the head by its number of rows (`INSERT ... ON CONFLICT DO UPDATE`, which
 * takes the row's lock and waits for any transaction holding it) and numbers its rows
 * head - n + 1 .. head. The lock is held until COMMIT, so for any two transactions that append
 * to one document, the one with the lower positions committed before the other could even
 * number its rows. Hence the invariant the cluster relies on:
 *
 *   In any snapshot, every row of a document with a position <= the `head` visible in that
 *   snapshot is visible too (or was removed by a compaction or delete visible too).
 *
 * Proof: the transaction T that wrote head H committed before the snapshot. A row with position
 * p <= H was numbered by a transaction U whose head update comes no later than T's in the row's
 * chain of versions (heads only grow along it, and a later one starts above H). U's is T's own,
 * or U committed before T could lock the row, so before T committed. Positions are also dense:
 * a transaction that aborts rolls its head back, so a document's positions are 1, 2, 3, ...
 * (after the floor of postgres-schema.ts migration 2; a compaction with a `through` past the
 * head raises it, leaving positions without rows, which no relay does).
 *
 * A batch with several documents locks their rows in one fixed order (names sorted by code
 * unit), so two relays' batches never wait for each other in a cycle (deadlock). Compactions and
 * deletes lock their one document row first, before anything else (postgres-store.ts).
 */

/**
 * Every append transaction tells the relays that follow the document what it committed, with
 * one NOTIFY per document on the document's own channel (postgres-change-feed.ts listens), sent
 * by PostgreSQL at COMMIT, in commit order: a JSON object with the appending store's `o`rigin id,
 * the `d`ocument, the `f`irst and las`t` position, `u`: the updates in base64 in position order
 * when they are small (at most INLINE_NOTE_BYTES in all and INLINE_NOTE_UPDATES of them) or null
 * (the follower reads them), and `s`: when the statement was sent (the appending relay's clock,
 * ms), for the notification lag metric. The payload must stay under PostgreSQL's 8,000 bytes or
 * the whole append fails: a name is at most 512 bytes (1,024 JSON-escaped: names have no control
 * characters nor backslashes) and inline updates at most 4,096 bytes (base64 with per-update
 * padding and quotes: under 5,900 characters), so a payload stays under 7,100.
 */
export const INLINE_NOTE_BYTES = 4_096;
export const INLINE_NOTE_UPDATES = 64;

/** The channel of a document's changes: identifiers are limited to 63 bytes, names are not. */
export const CHANGE_CHANNEL_SQL = (doc: string): string => `'capsync_' || md5(${doc})`;

function changeNoteSql(param: number): string {
  return `json_build_object('o', $${param}::text, 'd', i.doc, 'f', min(i.pos), 't', max(i.pos), 's', $${param + 1}::float8,
    'u', CASE WHEN sum(octet_length(i.data)) <= ${INLINE_NOTE_BYTES} AND count(*) <= ${INLINE_NOTE_UPDATES}
      THEN json_agg(translate(encode(i.data, 'base64'), E'\\n', '') ORDER BY i.pos) END)::text`;
}

/**
 * The note of a claimClients statement (postgres-store.ts; parameters $1 document, $2 owner,
 * $4 origin; reads its `claimed` rows): `k` 'claims', `w` the owner and `c` the ids it holds, both
 * null when there are more than INLINE_CLAIM_IDS ids or the owner is over 800 bytes (a follower
 * then reads the owners). Bounded like a changes note: the name is at most 1,026 characters
 * JSON-escaped, an owner of at most 800 bytes at most 4,800 (control characters escape to six),
 * 100 ids at most 2,000; the payload stays under 8,000 bytes, past which the claim would fail.
 * Sent only when it holds some of the ids (a lost race sends none).
 */
export const INLINE_CLAIM_IDS = 100;
const INLINE_CLAIMS = `count(*) <= ${INLINE_CLAIM_IDS} AND octet_length($2::text) <= 800`;
export const claimsNoteSql = `SELECT pg_notify(${CHANGE_CHANNEL_SQL('$1')}, json_build_object('o', $4::text, 'd', $1::text, 'k', 'claims',
    'w', CASE WHEN ${INLINE_CLAIMS} THEN $2::text END, 'c', CASE WHEN ${INLINE_CLAIMS} THEN json_agg(client::text) END)::text)
  FROM claimed WHERE owner = $2 HAVING count(*) > 0`;

/**
 * The append statement. $1: the batch's documents, in call order; $2: their updates, one after
 * the other in one binary parameter (a bytea[] would travel as hex text, built as one string:
 * twice the bytes, and past V8's string limit at ~256 MiB), cut by $3 (1-based starts) and $4
 * (lengths); $5: offsets (see insertBatch); $6..$8 per document: names in lock order, row
 * counts, bytes; $9, $10: the note's origin and time.
 * `heads` processes its rows in the ORDER BY order, so it takes the document rows' locks in
 * that order. `ins` reads `heads`' RETURNING, so its rows are numbered from the heads this
 * transaction set, after it holds the locks. A document new to capsync_docs starts after the
 * floor (see migration 2). $11 per document: the incarnation its appends were made for, -1 for
 * none (unchecked). A document row whose incarnation is another (deleted since) is locked but not
 * updated, so it is not in `heads` and none of its rows are inserted: its appends are refused
 * (DocumentDeletedError). The check runs under the row's lock, after any delete holding it
 * committed (PostgreSQL re-evaluates the condition on the row's latest version).
 */
const APPEND_SQL = `WITH batch (doc, data, off) AS (
    SELECT t.doc, substring($2::bytea FROM t.start FOR t.len), t.off
      FROM unnest($1::text[], $3::int[], $4::int[], $5::bigint[]) AS t (doc, start, len, off)),
  heads AS (
    INSERT INTO capsync_docs AS d (doc, head, log_count, log_bytes)
    SELECT t.doc, coalesce((SELECT floor FROM capsync_doc_position_floor), 0) + t.n, t.n, t.bytes
      FROM unnest($6::text[], $7::bigint[], $8::bigint[]) WITH ORDINALITY AS t (doc, n, bytes, o)
      ORDER BY t.o
    ON CONFLICT (doc) DO UPDATE SET head = d.head + excluded.log_count, log_count = d.log_count + excluded.log_count,
      log_bytes = d.log_bytes + excluded.log_bytes
      WHERE (SELECT e.inc FROM unnest($6::text[], $11::bigint[]) AS e (doc, inc) WHERE e.doc = d.doc) IN (-1, d.incarnation)
    RETURNING d.doc, d.head, d.log_count, d.log_bytes),
  ins AS (INSERT INTO capsync_doc_updates (doc, pos, data) SELECT b.doc, h.head + b.off, b.data FROM batch b JOIN heads h ON h.doc = b.doc
    RETURNING doc, pos, data),
  notes AS (SELECT pg_notify(${CHANGE_CHANNEL_SQL('i.doc')}, ${changeNoteSql(9)}) FROM ins i GROUP BY i.doc)
  SELECT doc, head, log_count, log_bytes, (SELECT count(*) FROM notes) AS notes FROM heads`;

export interface PendingAppend {
  name: string;
  update: Uint8Array;
  /** The incarnation it was made for (DocStore.append), or undefined: unchecked. */
  incarnation: number | undefined;
  resolve(result: AppendResult): void;
  reject(err: unknown): void;
}

/**
 * Appends and bytes of one batch, at most: bounds on one statement's size and on how long it
 * holds the documents' row locks. Past either the next append starts another batch (an update
 * larger than MAX_BATCH_BYTES goes alone; PostgreSQL takes a parameter of up to 1 GB).
 */
export const MAX_BATCH = 4_000;
export const MAX_BATCH_BYTES = 64 * 1024 * 1024;

/**
 * Writes `batch` (in call order) as one statement, so one transaction, and settles each append's
 * promise once it committed (or rejects them all with a StorageError: then nothing was stored).
 */
export async function insertBatch(pool: pg.Pool, all: PendingAppend[], origin: string): Promise<void> {
  // Per document, the highest incarnation its appends were made for: incarnations only grow, so
  // an append made for a lower one is of a deleted incarnation, refused without asking.
  const expected = new Map<string, number>();
  for (const item of all) if (item.incarnation !== undefined) expected.set(item.name, Math.max(expected.get(item.name) ?? -1, item.incarnation));
  const batch: PendingAppend[] = [];
  for (const item of all) {
    const wanted = expected.get(item.name);
    if (item.incarnation !== undefined && wanted !== undefined && item.incarnation < wanted) item.reject(deletedError(item.name, item.incarnation));
    else batch.push(item);
  }
  if (batch.length === 0) return;
  // Per document: its rows in call order numbered k = 1..n, so a row's position is
  // head - n + k, head being what the statement returns; `off` = k - n.
  const docs = new Map<string, { n: number; bytes: number }>();
  const ks = batch.map((item) => {
    const doc = docs.get(item.name) ?? { n: 0, bytes: 0 };
    docs.set(item.name, doc);
    doc.n += 1;
    doc.bytes += item.update.byteLength;
    return doc.n;
  });
  // Fixed statement text with arrays, prepared once per connection (`name`): a VALUES list of
  // the batch's length would be parsed and planned again for every batch (measured: most of
  // the statement's cost for small batches).
  const bdocs: string[] = [];
  const starts: number[] = [];
  const lengths: number[] = [];
  const boffs: number[] = [];
  let at = 1;
  batch.forEach((item, i) => {
    bdocs.push(item.name);
    starts.push(at);
    lengths.push(item.update.byteLength);
    at += item.update.byteLength;
    boffs.push(ks[i]! - docs.get(item.name)!.n);
  });
  const blob = Buffer.concat(batch.map((item) => item.update));
  // The lock order: default sort compares UTF-16 code units, the same on every relay.
  const names = [...docs.keys()].sort();
  const params: unknown[] = [bdocs, blob, starts, lengths, boffs, names, names.map((d) => docs.get(d)!.n), names.map((d) => docs.get(d)!.bytes), origin, Date.now(), names.map((d) => expected.get(d) ?? -1)];
  let rows: { doc: string; head: string; log_count: string; log_bytes: string }[];
  try {
    ({ rows } = await pool.query({ name: 'capsync_append', text: APPEND_SQL, values: params }));
  } catch (err) {
    const error = storageError('append', err);
    for (const item of batch) item.reject(error);
    return;
  }
  const after = new Map(rows.map((r) => [r.doc, { head: Number(r.head), count: Number(r.log_count), bytes: Number(r.log_bytes) }]));
  // A document missing from the result was deleted since its appends were made: none stored.
  for (const name of names) if (!after.has(name)) docs.delete(name);
  // The log's size before this batch, counted forward item by item.
  const sizes = new Map([...docs].map(([name, { n, bytes }]) => [name, { count: after.get(name)!.count - n, bytes: after.get(name)!.bytes - bytes }]));
  batch.forEach((item, i) => {
    const doc = docs.get(item.name);
    if (!doc) return item.reject(deletedError(item.name, item.incarnation ?? -1));
    const size = sizes.get(item.name)!;
    size.count += 1;
    size.bytes += item.update.byteLength;
    item.resolve({ position: after.get(item.name)!.head - doc.n + ks[i]!, logCount: size.count, logBytes: size.bytes });
  });
}
