import { wrap, type DBSchema, type IDBPDatabase, type IDBPTransaction } from 'idb';
import { LocalStorageError } from '@capsync/core';
import { isSubdocReplicaOf, logSize, type OutboxRecord, type ReplicaStore, type ReplicaWrite, type StorageAdapter, type StoredUpdate } from './storage-adapter.js';

interface ReplicaSchema extends DBSchema {
  updates: { key: number; value: StoredUpdate };
  outbox: { key: string; value: OutboxRecord };
}

const SCHEMA_VERSION = 1;
const DEFAULT_PREFIX = 'capsync:';

export interface IndexedDbStorageOptions {
  /**
   * The IndexedDB factory; defaults to `globalThis.indexedDB`. In Node, import
   * 'fake-indexeddb/auto' (idb needs the IDB* globals) and pass `new IDBFactory()` for an
   * isolated "browser profile".
   */
  factory?: IDBFactory;
  /** Database name prefix; one database per document is named prefix + document name. */
  prefix?: string;
}

/**
 * Replicas in IndexedDB, one database per document (so clearing one is a deleteDatabase and
 * tabs on different documents never contend). Stores: `updates` (auto-increment log rows)
 * and `outbox` (records keyed by batch key).
 */
export class IndexedDbStorage implements StorageAdapter {
  readonly kind = 'indexeddb';
  readonly persistent = true;
  private readonly prefix: string;

  constructor(private readonly options: IndexedDbStorageOptions = {}) {
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
  }

  private factory(): IDBFactory {
    const factory = this.options.factory ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
    if (!factory) throw new LocalStorageError('local-storage-unavailable', 'IndexedDB is not available in this environment');
    // idb recognizes requests and transactions by the global IDB* classes.
    if (typeof (globalThis as { IDBRequest?: unknown }).IDBRequest === 'undefined') {
      throw new LocalStorageError('local-storage-unavailable', 'IndexedDB globals are missing (in Node, import "fake-indexeddb/auto" first)');
    }
    return factory;
  }

  async open(docName: string): Promise<ReplicaStore> {
    let db: IDBPDatabase<ReplicaSchema>;
    try {
      const request = this.factory().open(this.prefix + docName, SCHEMA_VERSION);
      request.onupgradeneeded = () => {
        const raw = request.result;
        if (!raw.objectStoreNames.contains('updates')) raw.createObjectStore('updates', { autoIncrement: true });
        if (!raw.objectStoreNames.contains('outbox')) raw.createObjectStore('outbox', { keyPath: 'key' });
      };
      db = (await wrap(request)) as unknown as IDBPDatabase<ReplicaSchema>;
    } catch (err) {
      throw asLocalStorageError(err, `opening the local replica of "${docName}" failed`);
    }
    // Another tab deleting or upgrading this database must not be blocked by us.
    db.addEventListener('versionchange', () => db.close());
    return new IndexedDbReplicaStore(db, docName);
  }

  async clear(docName?: string): Promise<void> {
    const factory = this.factory();
    // Without databases() (old browsers) only the named replica can be found: its
    // subdocuments' replicas are left (and clear() all clears nothing), as before.
    const all = typeof factory.databases === 'function' ? await factory.databases() : [];
    const ours = all.map((d) => d.name ?? '').filter((n) => n.startsWith(this.prefix));
    let names: string[];
    if (docName !== undefined) {
      const subdocs = ours.filter((n) => isSubdocReplicaOf(n.slice(this.prefix.length), docName));
      names = [this.prefix + docName, ...subdocs];
    } else names = ours;
    await Promise.all(
      names.map(
        (name) =>
          new Promise<void>((resolve, reject) => {
            const request = factory.deleteDatabase(name);
            request.onsuccess = () => resolve();
            request.onerror = () => reject(asLocalStorageError(request.error, `deleting local replica ${name} failed`));
          }),
      ),
    );
  }
}

class IndexedDbReplicaStore implements ReplicaStore {
  constructor(
    private readonly db: IDBPDatabase<ReplicaSchema>,
    private readonly docName: string,
  ) {}

  async load(): Promise<{ updates: StoredUpdate[]; outbox: OutboxRecord[] }> {
    try {
      const tx = this.db.transaction(['updates', 'outbox'], 'readonly');
      const [updates, outbox] = await Promise.all([tx.objectStore('updates').getAll(), tx.objectStore('outbox').getAll(), tx.done]);
      return { updates, outbox };
    } catch (err) {
      throw asLocalStorageError(err, `reading the local replica of "${this.docName}" failed`);
    }
  }

  async write(batch: ReplicaWrite): Promise<void> {
    let tx: IDBPTransaction<ReplicaSchema, ('updates' | 'outbox')[], 'readwrite'> | undefined;
    try {
      tx = this.db.transaction(['updates', 'outbox'], 'readwrite');
      const updates = tx.objectStore('updates');
      const outbox = tx.objectStore('outbox');
      // Requests are queued synchronously; only the commit is awaited. A failed request
      // aborts the transaction and tx.done reports why, so the requests' own rejections
      // (AbortError) are expected: handle them, or they surface as unhandled rejections.
      for (const u of batch.updates) updates.add(u).catch(ignore);
      for (const r of batch.putOutbox) outbox.put(r).catch(ignore);
      for (const key of batch.deleteOutbox) outbox.delete(key).catch(ignore);
      await tx.done;
    } catch (err) {
      // All or nothing: if a request threw part way, the ones queued before it must not commit.
      if (tx) {
        tx.done.catch(ignore);
        try {
          tx.abort();
        } catch {
          // Already aborted (the error came from tx.done) or committed.
        }
      }
      throw asLocalStorageError(err, `saving to the local replica of "${this.docName}" failed`);
    }
  }

  async compact(merge: (log: StoredUpdate[]) => StoredUpdate | null) {
    try {
      const tx = this.db.transaction('updates', 'readwrite');
      const store = tx.objectStore('updates');
      const [keys, log] = await Promise.all([store.getAllKeys(), store.getAll()]);
      const before = logSize(log);
      // merge() is synchronous, so the transaction stays active and no other write can
      // slip in between reading the log and replacing it.
      const merged = keys.length > 0 ? merge(log) : null;
      let after = before;
      if (merged) {
        store.delete(IDBKeyRange.bound(keys[0]!, keys[keys.length - 1]!)).catch(ignore);
        store.add(merged).catch(ignore);
        after = logSize([merged]);
      }
      await tx.done;
      return { before, after };
    } catch (err) {
      throw asLocalStorageError(err, `compacting the local replica of "${this.docName}" failed`);
    }
  }

  async size() {
    const log = await this.db.getAll('updates');
    return logSize(log);
  }

  close(): void {
    this.db.close();
  }
}

/** For request promises whose failure tx.done reports. */
const ignore = (): void => {};

/** Maps a DOMException (or anything) to a typed error; quota errors keep their own code. */
export function asLocalStorageError(err: unknown, context: string): LocalStorageError {
  if (err instanceof LocalStorageError) return err;
  const name = (err as { name?: string } | null)?.name;
  const detail = (err as { message?: string } | null)?.message ?? String(err);
  if (name === 'QuotaExceededError') return new LocalStorageError('quota-exceeded', `${context}: storage quota exceeded`, { cause: err });
  return new LocalStorageError('local-storage-unavailable', `${context}: ${detail}`, { cause: err });
}
