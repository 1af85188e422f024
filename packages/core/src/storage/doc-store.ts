/**
 * Storage boundary for documents. One implementation per backend (memory, SQLite, ...);
 * every implementation runs the exported conformance suite, which checks this contract case by
 * case (`docStoreConformance` from `@capsync/core/conformance`, storage/conformance.ts; run by
 * MemoryDocStore, SqliteDocStore and SqliteWorkerStore). Its hard promises: an append that
 * resolved survives reopening, and a compaction never loses an update appended while it runs.
 *
 * Model: per document, an optional snapshot plus an append-only log of Yjs (v1) updates.
 * Every log entry gets a position; positions strictly increase within a document and are
 * never reused, not even after `compact` or `delete`, nor across reopening the store.
 *
 * Incarnations: every document name has an incarnation, a counter that starts at 0 and that
 * `delete` raises by one, durably (it outlives the delete, like positions). A replica that
 * synced with incarnation N holds content of that incarnation only; once the name was deleted
 * (N + 1) its content must never come back (see the relay's DocumentDeleted refusal). Why a
 * counter rather than a random id: a store that never deleted a name needs no row for it
 * (incarnation 0, what every replica of before incarnations had), and of two incarnations of
 * one name the higher is the newer, so a stale writer is told apart without asking the store.
 */
export interface DocStore {
  /**
   * Reads everything stored for `name`: the snapshot (if any) first, then every log entry
   * after it in append order. Applying `updates` in order to an empty Y.Doc yields the stored
   * document. An unknown document loads as `{ updates: [], head: 0, logCount: 0, logBytes: 0, incarnation: 0 }`
   * (a deleted one with its head and incarnation).
   * Reflects every `append` that resolved before `load` was called.
   */
  load(name: string): Promise<StoredDoc>;

  /**
   * Appends one update to the document's log. Resolves only once the update is durable:
   * committed so that a process crash (SIGKILL) right after cannot lose it. Appends to one
   * document are stored in call order, also when called concurrently without awaiting.
   * Rejects with `StorageError` when the update could not be stored; then nothing was stored.
   * The error is `retryable` when the backend could not be reached (a database that is down or
   * partitioned away): the relay then keeps the update in memory and appends it again until it
   * commits, instead of reloading the document (see the relay's DocAppends).
   *
   * `incarnation`, when given, is the incarnation the writer loaded: if the document's is
   * another (it was deleted since), the append stores nothing and rejects with
   * `DocumentDeletedError`. The check and the insert are atomic against `delete`, so an append
   * racing with a delete either lands before it (and is deleted with the rest) or is refused:
   * it never starts the new incarnation's log with the old one's content.
   */
  append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult>;

  /**
   * Atomically replaces the snapshot and every log entry at or before `through` with
   * `snapshot`, which the caller guarantees contains all of them (it may contain more).
   * Entries after `through` stay. A `through` not past the current snapshot's is stale and
   * ignored. Either all of it happens or none of it. With `incarnation` given, a compaction of
   * another incarnation than the document's (it was deleted since) is ignored too, atomically
   * against `delete`: a snapshot of deleted content never becomes the new incarnation's.
   */
  compact(name: string, snapshot: Uint8Array, through: number, incarnation?: number): Promise<void>;

  /**
   * Records that `owner` (an identity: a token's `sub`) owns the Yjs client ids `clientIds` of
   * document `name`, where nobody owns them yet: the first claim of a client id wins and is
   * never replaced. Returns the ids of `clientIds` another owner already holds, with that
   * owner (empty when every claim took or was already `owner`'s). Any safe integer is a valid
   * id: the relay also records negative ones (the ids its writers carried, see the relay's
   * ClientOwners), which must round-trip like the others.
   *
   * Durable like `append`: committed before the promise resolves, and ordered with appends, so
   * claims made before an append are committed no later than that append (the relay relies on
   * this: an acknowledged update's claims survive a crash).
   */
  claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]>;

  /**
   * Every client id of `name` with its owner, as recorded by `claimClients`, in no particular
   * order. Empty for an unknown document.
   */
  loadClientOwners(name: string): Promise<[clientId: number, owner: string][]>;

  /**
   * Removes the document's snapshot, log and client id owners and raises its incarnation by one,
   * in one atomic step; resolves with the new incarnation once committed. Loading it afterwards
   * yields an empty document with that incarnation. Deleting an unknown document is allowed
   * (it raises the incarnation too; the relay answers 404 before calling it).
   */
  delete(name: string): Promise<number>;

  /**
   * Names of every stored document (with a snapshot or log entries), in no particular order.
   * A deleted document is not listed. Used by replicate-all relays to sweep every document.
   */
  list(): Promise<string[]>;

  /** Resolves when the backend can serve reads and writes; rejects with `StorageError` otherwise. */
  ping(): Promise<void>;

  /** Finishes pending writes and releases resources. No method may be called afterwards. */
  close(): Promise<void>;
}

export interface StoredDoc {
  /** Snapshot first (when present), then log entries in append order. */
  updates: Uint8Array[];
  /** Position of the last entry `updates` reflects (snapshot or log), 0 when nothing is stored. */
  head: number;
  /** Number of log entries after the snapshot. */
  logCount: number;
  /** Total bytes of those log entries. */
  logBytes: number;
  /** The document's incarnation (0 until its first delete; see DocStore). */
  incarnation: number;
}

/** A client id that `claimClients` could not claim: `owner` holds it. */
export interface ClientClaimConflict {
  clientId: number;
  owner: string;
}

export interface AppendResult {
  /** Position of the appended entry. */
  position: number;
  /** Log entries after the snapshot, including this one. */
  logCount: number;
  /** Their total bytes. */
  logBytes: number;
}
