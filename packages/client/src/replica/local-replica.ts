import * as Y from 'yjs';
import { LocalStorageError } from '@capsync/core';
import { compactLog } from '../storage/compact-log.js';
import type { OutboxRecord, ReplicaSize, ReplicaStore, ReplicaWrite, StorageAdapter, StoredUpdate } from '../storage/storage-adapter.js';
import { asLocalStorageError } from '../storage/indexeddb-storage.js';

export interface LocalReplicaOptions {
  /** Queued writes commit this long after the first of them (one transaction per burst). */
  writeDelayMs: number;
  /** Compact the log once it holds this many rows (writes since the last compaction). */
  compactAfterRows: number;
}

/**
 * The key of the outbox record that holds the replica's incarnation (the relay's DocStore
 * counter, see IncarnationMessage) in its `count`: kept in the outbox store so that every
 * StorageAdapter stores it, atomically with the log, without a new store or method. The NUL
 * makes it a key no batch of local updates has (theirs are `<session id>:<n>`).
 */
export const INCARNATION_KEY = '\u0000incarnation';

export interface LocalReplicaHooks {
  /** Called once per failure that degrades the replica to memory. */
  onError(err: LocalStorageError): void;
  /** Called right before a batch is committed, to add outbox changes to it. */
  beforeCommit?(batch: ReplicaWrite): void;
  /** Called after a batch committed. */
  afterCommit?(batch: ReplicaWrite): void;
}

/**
 * The local, stored half of a document replica. Batches writes (one transaction per burst
 * of edits, not per keystroke), compacts the log past a threshold and on open, and falls
 * back to memory when storage fails: the document keeps working, the app gets one typed
 * error event, and nothing is thrown into it.
 */
export class LocalReplica {
  private queue: StoredUpdate[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** The commit in flight, if any; commits never overlap so they land in order. */
  private inFlight: Promise<void> | null = null;
  /** Resolved when everything queued so far is committed. */
  private waiters: { resolve(): void; reject(err: unknown): void }[] = [];
  private rows = 0;
  private compaction: Promise<void> | null = null;
  private closed = false;
  /** Set when storage failed; the replica then lives in memory only. */
  failure: LocalStorageError | null = null;
  /** The incarnation of the document this replica synced with, if it ever learned one. */
  incarnation: number | undefined;
  /** An incarnation learned and not yet stored. */
  private incarnationToStore: number | undefined;

  private constructor(
    private store: ReplicaStore | null,
    readonly persistent: boolean,
    private readonly options: LocalReplicaOptions,
    private readonly hooks: LocalReplicaHooks,
  ) {}

  /**
   * Opens and loads the replica. Never rejects: a storage that cannot open yields an empty
   * in-memory replica and an error event.
   */
  static async open(
    adapter: StorageAdapter,
    docName: string,
    options: LocalReplicaOptions,
    hooks: LocalReplicaHooks,
  ): Promise<{ replica: LocalReplica; updates: StoredUpdate[]; outbox: OutboxRecord[] }> {
    try {
      const store = await adapter.open(docName);
      const loaded = await store.load();
      const replica = new LocalReplica(store, adapter.persistent, options, hooks);
      replica.rows = loaded.updates.length;
      const kept = loaded.outbox.find((r) => r.key === INCARNATION_KEY);
      replica.incarnation = kept?.count;
      return { replica, updates: loaded.updates, outbox: loaded.outbox.filter((r) => r.key !== INCARNATION_KEY) };
    } catch (err) {
      const replica = new LocalReplica(null, false, options, hooks);
      replica.fail(asLocalStorageError(err, `local replica of "${docName}" unavailable`));
      return { replica, updates: [], outbox: [] };
    }
  }

  /** True while writes reach storage (false for memory storage or after a failure). */
  get saving(): boolean {
    return this.store !== null && this.persistent;
  }

  /** Queues an update for the log; it commits with the next batch. */
  append(update: StoredUpdate): void {
    if (!this.store || this.closed) return;
    this.queue.push(update);
    this.schedule();
  }

  /** Records the incarnation the relay announced; stored with the next commit. */
  setIncarnation(incarnation: number): void {
    if (this.incarnation === incarnation) return;
    this.incarnation = incarnation;
    this.incarnationToStore = incarnation;
    this.schedule();
  }

  /**
   * The document was deleted (the relay refused this replica with 'document-deleted'): closes
   * the store and removes the stored replica (and its subdocuments') with `adapter.clear`.
   * Nothing is saved afterwards.
   */
  async erase(adapter: StorageAdapter, docName: string): Promise<void> {
    this.queue = [];
    this.incarnationToStore = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight?.catch(() => {});
    await this.compaction;
    this.closed = true;
    this.store?.close();
    this.store = null;
    for (const w of this.waiters.splice(0)) w.resolve();
    await adapter.clear(docName);
  }

  /** Schedules a commit (for outbox-only changes too). */
  schedule(): void {
    if (!this.store || this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.commit().catch(() => {});
    }, this.options.writeDelayMs);
  }

  /**
   * Commits everything queued so far now. Resolves once it is committed; rejects with the
   * storage failure if the replica fell back to memory.
   */
  commit(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.store) return Promise.resolve();
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    void this.drain();
    return done;
  }

  private async drain(): Promise<void> {
    if (this.inFlight) return;
    while (this.store && (this.waiters.length > 0 || this.queue.length > 0)) {
      const waiters = this.waiters.splice(0);
      const batch: ReplicaWrite = { updates: mergeRows(this.queue.splice(0)), putOutbox: [], deleteOutbox: [] };
      if (this.incarnationToStore !== undefined) {
        batch.putOutbox.push({ key: INCARNATION_KEY, count: this.incarnationToStore });
        this.incarnationToStore = undefined;
      }
      this.hooks.beforeCommit?.(batch);
      if (batch.updates.length + batch.putOutbox.length + batch.deleteOutbox.length === 0) {
        for (const w of waiters) w.resolve();
        continue;
      }
      const store = this.store;
      this.inFlight = store.write(batch);
      try {
        await this.inFlight;
      } catch (err) {
        this.inFlight = null;
        const failure = this.fail(asLocalStorageError(err, 'saving locally failed'));
        for (const w of waiters) w.reject(failure);
        return;
      }
      this.inFlight = null;
      this.rows += batch.updates.length;
      this.hooks.afterCommit?.(batch);
      for (const w of waiters) w.resolve();
      if (this.rows >= this.options.compactAfterRows) void this.compact();
    }
  }

  /** Merges the log into one snapshot (in the background; errors keep the log as it is). */
  compact(): Promise<void> {
    if (!this.store || this.closed) return Promise.resolve();
    if (this.compaction) return this.compaction;
    const store = this.store;
    this.compaction = store
      .compact(compactLog)
      .then(({ after }) => {
        this.rows = after.updates;
      })
      .catch(() => {
        // A failed compaction leaves the log intact; the next threshold crossing retries.
      })
      .finally(() => {
        this.compaction = null;
      });
    return this.compaction;
  }

  /** Size of the stored log (for diagnostics and benchmarks). */
  async size(): Promise<ReplicaSize> {
    return this.store ? this.store.size() : { updates: 0, bytes: 0 };
  }

  /** Commits what is queued, then closes the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.commit().catch(() => {});
    await this.compaction;
    this.closed = true;
    this.store?.close();
    this.store = null;
  }

  private fail(err: LocalStorageError): LocalStorageError {
    if (this.failure) return this.failure;
    this.failure = err;
    this.store?.close();
    this.store = null;
    this.queue = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.hooks.onError(err);
    return err;
  }
}

/**
 * Most bytes of rows merged into one. Merging holds the event loop for as long as it takes
 * (~5 ms per MB, a 10 MB state synced in pieces took 50 ms in one task): larger rows are
 * stored as they came, and smaller ones merged in groups up to this size.
 */
export const MERGE_ROW_BYTES = 256 * 1024;

/**
 * Few rows per commit: a burst of thousands of small updates becomes one merged row (cheaper
 * to store, load and compact than thousands), in groups of at most MERGE_ROW_BYTES, in order.
 * Yjs merges V1 updates without integrating them.
 */
function mergeRows(rows: StoredUpdate[]): StoredUpdate[] {
  if (rows.length <= 1) return rows;
  const out: StoredUpdate[] = [];
  let group: StoredUpdate[] = [];
  let groupBytes = 0;
  const close = (): void => {
    if (group.length > 0) out.push(...mergeGroup(group));
    group = [];
    groupBytes = 0;
  };
  for (const row of rows) {
    if (row.format !== 'v1' || row.data.byteLength > MERGE_ROW_BYTES) {
      close();
      out.push(row);
      continue;
    }
    if (groupBytes + row.data.byteLength > MERGE_ROW_BYTES) close();
    group.push(row);
    groupBytes += row.data.byteLength;
  }
  close();
  return out;
}

function mergeGroup(rows: StoredUpdate[]): StoredUpdate[] {
  if (rows.length === 1) return rows;
  try {
    return [{ data: Y.mergeUpdates(rows.map((r) => r.data)), format: 'v1' }];
  } catch {
    // An update Yjs cannot parse is stored as it is; loading reports and skips it.
    return rows;
  }
}
