import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DocumentDeletedError, StorageError, type AppendResult, type ClientClaimConflict, type DocStore, type StoredDoc } from '@capsync/core';
import type { LockStore, PersistedLease } from '../locks/lock-store.js';
import type { WebhookDelivery, WebhookQueue, WebhookQueueStats } from '../webhooks/webhook-queue.js';
import type { SqliteDocStoreOptions } from './sqlite-store.js';
import type { WorkerReady, WorkerReply, WorkerRequest } from './sqlite-worker-protocol.js';

type Pending = { resolve(value: unknown): void; reject(err: unknown): void };
type Op = WorkerRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/**
 * The relay's default `DocStore`: a `SqliteDocStore` running in a worker thread. Same
 * database, same guarantees (an append resolves once committed, group commit per turn), but
 * the synchronous SQLite calls and their fsyncs run off the relay's event loop, so fan-out
 * latency does not depend on the disk. Requests are handled in order, so appends to one
 * document stay in call order.
 */
export class SqliteWorkerStore implements DocStore {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: StorageError | null = null;
  private closed = false;
  /** The embedded lock authority's tables, in the same database and worker. */
  readonly locks: LockStore = {
    loadLocks: () => this.call({ op: 'lock-load' }) as Promise<{ leases: PersistedLease[]; lastTokens: [string, number][] }>,
    grant: (key, owner, expiresAt) => this.call({ op: 'lock-grant', key, owner, expiresAt }) as Promise<number>,
    renew: async (key, token, expiresAt) => {
      await this.call({ op: 'lock-renew', key, token, expiresAt });
    },
    end: async (key, token) => {
      await this.call({ op: 'lock-end', key, token });
    },
  };

  /** The webhook outbox, in the same database and worker. */
  readonly webhooks: WebhookQueue = {
    enqueue: async (deliveries) => {
      await this.call({ op: 'webhook-enqueue', deliveries: [...deliveries] });
    },
    claim: (now, limit, leaseMs) => this.call({ op: 'webhook-claim', now, limit, leaseMs }) as Promise<WebhookDelivery[]>,
    remove: async (deliveryId) => {
      await this.call({ op: 'webhook-remove', deliveryId });
    },
    retryAt: async (deliveryId, attempts, nextAt) => {
      await this.call({ op: 'webhook-retry', deliveryId, attempts, nextAt });
    },
    rewrite: (deliveryId, body, nextAt, heldUntil) => this.call({ op: 'webhook-rewrite', deliveryId, body, nextAt, heldUntil }) as Promise<boolean>,
    stats: () => this.call({ op: 'webhook-stats' }) as Promise<WebhookQueueStats>,
  };

  private constructor(
    readonly file: string,
    private readonly worker: Worker,
  ) {
    worker.on('message', (msg: WorkerReply) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      // The one refusal that is not a storage failure: the relay tells it apart by its code.
      else p.reject(msg.code === 'document-deleted' ? new DocumentDeletedError(msg.message) : new StorageError(msg.message));
    });
    worker.on('error', (err) => this.fail(new StorageError(`SQLite worker failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => {
      if (!this.closed) this.fail(new StorageError(`SQLite worker exited (code ${code})`));
    });
  }

  /** Starts the worker and resolves once the database is open; rejects with StorageError. */
  static async open(file: string, options: SqliteDocStoreOptions = {}): Promise<SqliteWorkerStore> {
    const worker = startWorker({ file, options });
    const ready = await new Promise<WorkerReady>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    }).catch((err: unknown) => ({ ready: false as const, message: (err as Error).message }));
    if (!ready.ready) {
      await worker.terminate();
      throw new StorageError(ready.message);
    }
    return new SqliteWorkerStore(file, worker);
  }

  list(): Promise<string[]> {
    return this.call({ op: 'list' }) as Promise<string[]>;
  }

  load(name: string): Promise<StoredDoc> {
    return this.call({ op: 'load', name }) as Promise<StoredDoc>;
  }
  append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult> {
    return this.call({ op: 'append', name, update, incarnation }) as Promise<AppendResult>;
  }
  async compact(name: string, snapshot: Uint8Array, through: number, incarnation?: number): Promise<void> {
    await this.call({ op: 'compact', name, snapshot, through, incarnation });
  }
  claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    return this.call({ op: 'claim-clients', name, owner, clientIds }) as Promise<ClientClaimConflict[]>;
  }
  loadClientOwners(name: string): Promise<[number, string][]> {
    return this.call({ op: 'load-client-owners', name }) as Promise<[number, string][]>;
  }
  delete(name: string): Promise<number> {
    return this.call({ op: 'delete', name }) as Promise<number>;
  }
  async ping(): Promise<void> {
    await this.call({ op: 'ping' });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.call({ op: 'close' });
    } finally {
      this.closed = true;
      await this.worker.terminate();
    }
  }

  private call(op: Op): Promise<unknown> {
    if (this.closed) return Promise.reject(new StorageError('SQLite store is closed'));
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...op } as WorkerRequest);
    });
  }

  private fail(err: StorageError): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/**
 * The worker: this package's `./sqlite-worker` export, resolved as any import of it is. Built,
 * that is dist/storage/sqlite-worker.js; running from TypeScript source (`--conditions=source`:
 * tests, development) it is a development-only module that sets up a TypeScript loader in the
 * worker first (package.json, dev/sqlite-worker.mjs). So production code never loads one.
 */
function startWorker(workerData: unknown): Worker {
  return new Worker(pathToFileURL(createRequire(import.meta.url).resolve('@capsync/server/sqlite-worker')), { workerData });
}
