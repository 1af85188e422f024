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
 */
export interface DocStore {
  /**
   * Reads everything stored for `name`: the snapshot (if any) first, then every log entry
   * after it in append order. Applying `updates` in order to an empty Y.Doc yields the stored
   * document. An unknown document loads as `{ updates: [], head: 0, logCount: 0, logBytes: 0 }`.
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
   */
  append(name: string, update: Uint8Array): Promise<AppendResult>;

  /**
   * Atomically replaces the snapshot and every log entry at or before `through` with
   * `snapshot`, which the caller guarantees contains all of them (it may contain more).
   * Entries after `through` stay. A `through` not past the current snapshot's is stale and
   * ignored. Either all of it happens or none of it.
   */
  compact(name: string, snapshot: Uint8Array, through: number): Promise<void>;

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
   * Removes the document's snapshot, log and client id owners. Loading it afterwards yields an
   * empty document.
   */
  delete(name: string): Promise<void>;

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
