import { EventEmitter } from 'node:events';
import { IDBFactory as FakeIDBFactory } from 'fake-indexeddb';

/**
 * A browser profile's IndexedDB for tests: wraps a fake-indexeddb `IDBFactory` (one per
 * simulated browser) so a test can count transactions and make the browser misbehave the
 * ways real ones do. What it hands out are the real fake-indexeddb objects (so `idb` and the
 * client see genuine IDBRequest/IDBDatabase/IDBTransaction instances), with a few methods
 * overridden on the instances.
 *
 * Needs the IDB* globals (`import 'fake-indexeddb/auto'`), as the client's `idb` does.
 *
 * Failure modes:
 * - `failOpen('error')`: `open()` fails with an error event (InvalidStateError), like Firefox's
 *   private mode; `failOpen('throw')`: `open()` throws a SecurityError (storage blocked).
 * - `quotaAfterWrites(n, how)`: once `n` more `add`/`put` requests were made, writes run out of
 *   quota with a DOMException named 'QuotaExceededError':
 *   - 'abort': the transaction's requests succeed but the transaction aborts before it
 *     commits, with `error` QuotaExceededError (Chrome: quota is checked at commit);
 *   - 'request': the transaction aborts when the first request over quota runs (the requests
 *     after it then fail with AbortError; the transaction's `error` is QuotaExceededError);
 *   - 'throw': the `add`/`put` call itself throws it.
 * - `crash()`: the "tab process" dies: transactions not yet committed are aborted (their
 *   writes are lost, as in a real crash), connections close, and the profile refuses any
 *   further use by that process. The data committed before stays in the underlying factory:
 *   open a new `FailingIdb` (or the raw factory) on `inner` to "restart the browser".
 */
export class FailingIdb extends EventEmitter<{ transaction: [TxRecord]; settled: [TxRecord] }> implements IDBFactory {
  /** Every transaction the client created through this profile, in order. */
  readonly transactions: TxRecord[] = [];
  /** `add`/`put` requests made so far. */
  writes = 0;
  private openMode: 'error' | 'throw' | null = null;
  private quota: { after: number; how: QuotaMode } | null = null;
  private crashed = false;
  private readonly dbs = new Set<IDBDatabase>();

  constructor(readonly inner: IDBFactory = new FakeIDBFactory()) {
    super();
  }

  failOpen(how: 'error' | 'throw' | null): this {
    this.openMode = how;
    return this;
  }

  /** After `n` more add/put requests, every further one runs out of quota (see class doc). */
  quotaAfterWrites(n: number, how: QuotaMode = 'abort'): this {
    this.quota = { after: this.writes + n, how };
    return this;
  }

  /** Read-write transactions over `store` (any scope containing it) so far. */
  writeTransactions(store: string): TxRecord[] {
    return this.transactions.filter((t) => t.mode === 'readwrite' && t.stores.includes(store));
  }

  /** The tab's process dies now (see class doc). */
  crash(): void {
    this.crashed = true;
    for (const t of this.transactions) {
      if (t.outcome !== 'pending') continue;
      try {
        t.tx.abort();
      } catch {
        // Already committing: it lands, as it would have on disk.
      }
    }
    for (const db of this.dbs) db.close();
    this.dbs.clear();
  }

  open(name: string, version?: number): IDBOpenDBRequest {
    if (this.crashed) throw new DOMException('the page is gone', 'InvalidStateError');
    if (this.openMode === 'throw') throw new DOMException('The operation is insecure.', 'SecurityError');
    if (this.openMode === 'error') return failedOpenRequest(new DOMException('A mutation operation was attempted on a database that did not allow mutations.', 'InvalidStateError'));
    const request = this.inner.open(name, version);
    // Registered before the caller's listeners, so the database is instrumented before they see it.
    request.addEventListener('success', () => this.instrument(request.result));
    return request;
  }

  deleteDatabase(name: string): IDBOpenDBRequest {
    if (this.crashed) throw new DOMException('the page is gone', 'InvalidStateError');
    return this.inner.deleteDatabase(name);
  }

  databases(): Promise<IDBDatabaseInfo[]> {
    return this.inner.databases();
  }

  cmp(first: unknown, second: unknown): number {
    return this.inner.cmp(first, second);
  }

  private instrument(db: IDBDatabase): void {
    this.dbs.add(db);
    db.addEventListener('close', () => this.dbs.delete(db));
    const transaction = db.transaction.bind(db);
    const self = this;
    db.transaction = function (stores: string | string[], mode?: IDBTransactionMode, options?: IDBTransactionOptions) {
      if (self.crashed) throw new DOMException('The database connection is closing.', 'InvalidStateError');
      const tx = transaction(stores, mode, options);
      self.track(tx, typeof stores === 'string' ? [stores] : [...stores]);
      return tx;
    } as IDBDatabase['transaction'];
  }

  private track(tx: IDBTransaction, stores: string[]): void {
    const record: TxRecord = { tx, stores, mode: tx.mode, outcome: 'pending', writes: 0, error: null };
    this.transactions.push(record);
    const settle = (outcome: 'complete' | 'abort') => {
      if (record.outcome !== 'pending') return;
      record.outcome = outcome;
      record.error = tx.error;
      this.emit('settled', record);
    };
    tx.addEventListener('complete', () => settle('complete'));
    tx.addEventListener('abort', () => settle('abort'));
    this.emit('transaction', record);
    if (tx.mode === 'readonly') return;

    // Requests of this transaction still running, for the commit-time quota failure.
    let outstanding = 0;
    let overQuota = false;
    const commitFails = () => {
      if (!overQuota || outstanding > 0 || record.outcome !== 'pending') return;
      (tx as { error: DOMException | null }).error = quotaError();
      try {
        tx.abort();
      } catch {
        // Already finished.
      }
    };
    const watch = (request: IDBRequest) => {
      outstanding++;
      const done = () => {
        outstanding--;
        // Still inside the last request's success event: the transaction has not committed.
        commitFails();
      };
      request.addEventListener('success', done);
      request.addEventListener('error', done);
      return request;
    };
    const objectStore = tx.objectStore.bind(tx);
    const patched = new Map<string, IDBObjectStore>();
    tx.objectStore = (name: string) => {
      const existing = patched.get(name);
      if (existing) return existing;
      const store = objectStore(name);
      patched.set(name, store);
      for (const method of ['add', 'put'] as const) {
        const original = store[method].bind(store);
        store[method] = (value: unknown, key?: IDBValidKey) => {
          this.writes++;
          record.writes++;
          const quota = this.quota;
          if (quota && this.writes > quota.after) {
            if (quota.how === 'throw') throw quotaError();
            const request = watch(original(value, key));
            if (quota.how === 'abort') overQuota = true;
            else {
              // The transaction fails at this request, once it runs (still active then).
              request.addEventListener('success', () => {
                if (record.outcome !== 'pending') return;
                (tx as { error: DOMException | null }).error = quotaError();
                tx.abort();
              });
            }
            return request;
          }
          return watch(original(value, key));
        };
      }
      store.delete = ((del) => (query: IDBValidKey | IDBKeyRange) => watch(del(query)))(store.delete.bind(store));
      return store;
    };
  }
}

export type QuotaMode = 'abort' | 'request' | 'throw';

export interface TxRecord {
  tx: IDBTransaction;
  stores: string[];
  mode: IDBTransactionMode;
  outcome: 'pending' | 'complete' | 'abort';
  /** add/put requests made in it. */
  writes: number;
  error: DOMException | null;
}

function quotaError(): DOMException {
  return new DOMException('The quota has been exceeded.', 'QuotaExceededError');
}

/**
 * An IDBOpenDBRequest that fails with `error` (what a browser that refuses IndexedDB hands
 * out). A genuine instance as far as `instanceof` goes, so `idb` treats it as a request.
 */
function failedOpenRequest(error: DOMException): IDBOpenDBRequest {
  const listeners = new Map<string, Set<EventListenerOrEventListenerObject>>();
  const request = Object.create(IDBOpenDBRequest.prototype) as IDBOpenDBRequest;
  const props: Record<string, unknown> = {
    readyState: 'pending',
    result: undefined,
    error: null,
    source: null,
    transaction: null,
    onsuccess: null,
    onerror: null,
    onupgradeneeded: null,
    onblocked: null,
    addEventListener: (type: string, fn: EventListenerOrEventListenerObject) => {
      if (!listeners.has(type)) listeners.set(type, new Set());
      listeners.get(type)!.add(fn);
    },
    removeEventListener: (type: string, fn: EventListenerOrEventListenerObject) => listeners.get(type)?.delete(fn),
  };
  for (const [key, value] of Object.entries(props)) Object.defineProperty(request, key, { value, writable: true, configurable: true });
  setTimeout(() => {
    Object.assign(request, { readyState: 'done', error });
    const event = new Event('error');
    for (const fn of [...(listeners.get('error') ?? [])]) {
      if (typeof fn === 'function') fn.call(request, event);
      else fn.handleEvent(event);
    }
    (request.onerror as ((e: Event) => void) | null)?.call(request, event);
  }, 0);
  return request;
}
