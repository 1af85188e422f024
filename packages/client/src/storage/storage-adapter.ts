/**
 * Where a client keeps its local replicas. One `ReplicaStore` per document holds:
 * - the update log: every update the replica has seen (local or remote), possibly merged
 *   into snapshots by compaction. Loading all of it rebuilds the document.
 * - the outbox: records of local updates that are not yet durable on the relay, so the
 *   pending count survives a reload or crash. The updates themselves are in the log; the
 *   first sync after reopening sends the relay everything it lacks, which includes them.
 */

/** One stored update. Compaction writes V2 snapshots; the wire format is V1. */
export interface StoredUpdate {
  data: Uint8Array;
  format: 'v1' | 'v2';
}

/** A batch of local updates not yet acknowledged by the relay. */
export interface OutboxRecord {
  /** Unique across tabs and sessions. */
  key: string;
  /** How many local updates of the batch are still pending. */
  count: number;
  /**
   * The Yjs client ids the batch's updates were written under (one per page load or tab; a
   * Y.Doc changes its id only if it sees it in a remote update). Whoever uploads the batch
   * declares them to the relay, so they are claimed for this user (see Outbox.writers).
   * Absent in records of older versions and when unknown.
   */
  writers?: number[];
}

/** One atomic write: all of it commits, or none of it. */
export interface ReplicaWrite {
  updates: StoredUpdate[];
  putOutbox: OutboxRecord[];
  deleteOutbox: string[];
}

export interface ReplicaSize {
  /** Rows in the update log. */
  updates: number;
  /** Bytes of update data in the log. */
  bytes: number;
}

/**
 * The stored replica of one document.
 *
 * Contract:
 * - `write` commits atomically and resolves only once committed (durable as far as the
 *   platform promises); it rejects with `LocalStorageError` when it cannot.
 * - `compact` reads the whole log and replaces it with `merge(log)` in one atomic step, so
 *   rows written concurrently (another tab) are either merged or kept, never lost. When
 *   `merge` returns null the log is left alone.
 * - Several stores (tabs) may be open on one document at once.
 *
 * `storageAdapterConformance` (`@capsync/client/conformance`, storage-conformance.ts) checks
 * this contract, including that two tabs writing and compacting at once never lose a row.
 * MemoryStorage and IndexedDbStorage run it; run it against your own adapter.
 */
export interface ReplicaStore {
  load(): Promise<{ updates: StoredUpdate[]; outbox: OutboxRecord[] }>;
  write(batch: ReplicaWrite): Promise<void>;
  compact(merge: (log: StoredUpdate[]) => StoredUpdate | null): Promise<{ before: ReplicaSize; after: ReplicaSize }>;
  size(): Promise<ReplicaSize>;
  close(): void;
}

/** A storage backend for local replicas. */
export interface StorageAdapter {
  /** 'indexeddb', 'memory', or your own name; shown in errors. */
  readonly kind: string;
  /** False when nothing survives a reload (memory): `flush({ durability: 'local' })` then means "in memory". */
  readonly persistent: boolean;
  /** Opens (creating if needed) the replica of `docName`. Rejects with `LocalStorageError`. */
  open(docName: string): Promise<ReplicaStore>;
  /**
   * Deletes the replica of `docName` and those of its subdocuments (`isSubdocReplicaOf`), or
   * of every document when omitted.
   */
  clear(docName?: string): Promise<void>;
}

/**
 * The local replica name of subdocument `guid` of document `parent`: the NUL characters make it
 * a name no document can have (validateDocName refuses control characters), so it never
 * collides with a user document's replica.
 */
export function subdocReplicaName(parent: string, guid: string): string {
  return `${parent}\u0000sub\u0000${guid}`;
}

/**
 * Whether `replica` is the replica of a subdocument of `docName` (or of one of its
 * subdocuments): clearing a document clears those too, else its subdocuments' content would
 * stay on the device after `clearLocalData(docName)`.
 */
export function isSubdocReplicaOf(replica: string, docName: string): boolean {
  return replica.startsWith(subdocReplicaName(docName, ''));
}

export function logSize(log: StoredUpdate[]): ReplicaSize {
  let bytes = 0;
  for (const u of log) bytes += u.data.byteLength;
  return { updates: log.length, bytes };
}
