import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DocumentDeletedError, StorageError, type AppendResult, type ClientClaimConflict, type DocStore, type StoredDoc } from '@capsync/core';
import { SqliteWebhookTable } from './sqlite-webhook-table.js';
import { SqliteLockTables } from './sqlite-lock-tables.js';

export interface SqliteDocStoreOptions {
  /**
   * 'full' (default): every commit is fsynced, so an acknowledged update survives a power
   * loss, not just a process crash. 'normal': commits reach the OS but are fsynced at WAL
   * checkpoints only; survives SIGKILL, may lose the last commits on power loss.
   */
  synchronous?: 'full' | 'normal';
}

interface PendingAppend {
  name: string;
  update: Uint8Array;
  incarnation: number | undefined;
  resolve(result: AppendResult): void;
  reject(err: unknown): void;
}

/**
 * The embedded default `DocStore`: one SQLite database file in WAL mode (better-sqlite3).
 *
 * Appends use group commit: every append made in one event-loop turn is written in a single
 * transaction, and each resolves once that transaction committed. Under load that turns
 * thousands of fsyncs per second into one per turn without delaying a lone append.
 * Positions are AUTOINCREMENT row ids, so they are never reused, not even after deletes.
 */
export class SqliteDocStore implements DocStore {
  private readonly db: Database.Database;
  private queue: PendingAppend[] = [];
  private flushScheduled = false;
  private closed = false;
  private readonly stmts;
  /** The embedded lock authority's tables, in the same database. */
  readonly locks: SqliteLockTables;
  /** The webhook outbox, in the same database (one file, one backup). */
  readonly webhooks: SqliteWebhookTable;

  /** Opens (creating if needed) the database at `file`; `':memory:'` for a throwaway one. */
  constructor(readonly file: string, options: SqliteDocStoreOptions = {}) {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    try {
      this.db = new Database(file);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS doc_updates (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          doc TEXT NOT NULL,
          data BLOB NOT NULL
        );
        CREATE INDEX IF NOT EXISTS doc_updates_by_doc ON doc_updates (doc, id);
        CREATE TABLE IF NOT EXISTS doc_snapshots (
          doc TEXT PRIMARY KEY,
          through INTEGER NOT NULL,
          data BLOB NOT NULL
        );
        CREATE TABLE IF NOT EXISTS doc_client_owners (
          doc TEXT NOT NULL,
          client INTEGER NOT NULL,
          owner TEXT NOT NULL,
          PRIMARY KEY (doc, client)
        ) WITHOUT ROWID;
        -- A row per deleted name (absent: incarnation 0), kept after the delete like positions.
        CREATE TABLE IF NOT EXISTS doc_incarnations (
          doc TEXT PRIMARY KEY,
          incarnation INTEGER NOT NULL
        ) WITHOUT ROWID;
      `);
    } catch (err) {
      throw new StorageError(`cannot open SQLite database ${file}: ${(err as Error).message}`, { cause: err });
    }
    this.stmts = {
      insert: this.db.prepare<[string, Uint8Array]>('INSERT INTO doc_updates (doc, data) VALUES (?, ?)'),
      logStats: this.db.prepare<[string], { n: number; bytes: number }>(
        'SELECT count(*) AS n, coalesce(sum(length(data)), 0) AS bytes FROM doc_updates WHERE doc = ?',
      ),
      snapshot: this.db.prepare<[string], { through: number; data: Buffer }>('SELECT through, data FROM doc_snapshots WHERE doc = ?'),
      log: this.db.prepare<[string], { id: number; data: Buffer }>('SELECT id, data FROM doc_updates WHERE doc = ? ORDER BY id'),
      upsertSnapshot: this.db.prepare<[string, number, Uint8Array]>(
        `INSERT INTO doc_snapshots (doc, through, data) VALUES (?, ?, ?)
         ON CONFLICT (doc) DO UPDATE SET through = excluded.through, data = excluded.data`,
      ),
      trimLog: this.db.prepare<[string, number]>('DELETE FROM doc_updates WHERE doc = ? AND id <= ?'),
      deleteLog: this.db.prepare<[string]>('DELETE FROM doc_updates WHERE doc = ?'),
      deleteSnapshot: this.db.prepare<[string]>('DELETE FROM doc_snapshots WHERE doc = ?'),
      claimClient: this.db.prepare<[string, number, string]>('INSERT OR IGNORE INTO doc_client_owners (doc, client, owner) VALUES (?, ?, ?)'),
      clientOwner: this.db.prepare<[string, number], { owner: string }>('SELECT owner FROM doc_client_owners WHERE doc = ? AND client = ?'),
      clientOwners: this.db.prepare<[string], { client: number; owner: string }>('SELECT client, owner FROM doc_client_owners WHERE doc = ?'),
      deleteClientOwners: this.db.prepare<[string]>('DELETE FROM doc_client_owners WHERE doc = ?'),
      incarnation: this.db.prepare<[string], { incarnation: number }>('SELECT incarnation FROM doc_incarnations WHERE doc = ?'),
      raiseIncarnation: this.db.prepare<[string], { incarnation: number }>(
        `INSERT INTO doc_incarnations (doc, incarnation) VALUES (?, 1)
         ON CONFLICT (doc) DO UPDATE SET incarnation = incarnation + 1 RETURNING incarnation`,
      ),
      ping: this.db.prepare('SELECT 1'),
      list: this.db.prepare<[], { doc: string }>('SELECT doc FROM doc_snapshots UNION SELECT doc FROM doc_updates'),
    };
    this.locks = new SqliteLockTables(this.db);
    this.webhooks = new SqliteWebhookTable(this.db);
  }

  async list(): Promise<string[]> {
    this.assertOpen();
    return this.run('list', () => this.stmts.list.all().map((r) => r.doc));
  }

  async load(name: string): Promise<StoredDoc> {
    this.assertOpen();
    return this.run('load', () => {
      const read = this.db.transaction((doc: string): StoredDoc => {
        const snap = this.stmts.snapshot.get(doc);
        const log = this.stmts.log.all(doc);
        const updates: Uint8Array[] = snap ? [toBytes(snap.data)] : [];
        let logBytes = 0;
        for (const row of log) {
          updates.push(toBytes(row.data));
          logBytes += row.data.byteLength;
        }
        const head = log.at(-1)?.id ?? snap?.through ?? 0;
        return { updates, head, logCount: log.length, logBytes, incarnation: this.stmts.incarnation.get(doc)?.incarnation ?? 0 };
      });
      return read(name);
    });
  }

  append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new StorageError('SQLite store is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ name, update, incarnation, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Writes every queued append in one transaction and settles their promises. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    // An item for an incarnation that is not the document's (it was deleted since) is refused
    // in the same transaction that writes the others: a delete runs between batches, never
    // inside one, so the check and the insert cannot be split by it.
    const results: (AppendResult | DocumentDeletedError)[] = [];
    try {
      this.db.transaction(() => {
        const statsByDoc = new Map<string, { n: number; bytes: number }>();
        const incarnations = new Map<string, number>();
        for (const item of batch) {
          if (item.incarnation !== undefined) {
            let current = incarnations.get(item.name);
            if (current === undefined) incarnations.set(item.name, (current = this.stmts.incarnation.get(item.name)?.incarnation ?? 0));
            if (current !== item.incarnation) {
              results.push(new DocumentDeletedError(`document "${item.name}" was deleted (incarnation ${current}, the append's ${item.incarnation})`));
              continue;
            }
          }
          const position = Number(this.stmts.insert.run(item.name, item.update).lastInsertRowid);
          let stats = statsByDoc.get(item.name);
          if (!stats) {
            // Includes this row: read once per document per batch, then counted forward.
            stats = { ...this.stmts.logStats.get(item.name)! };
            statsByDoc.set(item.name, stats);
          } else {
            stats.n += 1;
            stats.bytes += item.update.byteLength;
          }
          results.push({ position, logCount: stats.n, logBytes: stats.bytes });
        }
        // IMMEDIATE: it reads (the incarnation) before it writes. A deferred transaction would
        // take the write lock only at its first insert, and SQLite answers such an upgrade with
        // SQLITE_BUSY at once, without waiting busy_timeout, while another connection writes.
      }).immediate();
    } catch (err) {
      const error = new StorageError(`append failed: ${(err as Error).message}`, { cause: err });
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, i) => {
      const result = results[i]!;
      if (result instanceof DocumentDeletedError) item.reject(result);
      else item.resolve(result);
    });
  }

  async compact(name: string, snapshot: Uint8Array, through: number, incarnation?: number): Promise<void> {
    this.assertOpen();
    this.run('compact', () =>
      this.db.transaction(() => {
        if (incarnation !== undefined && incarnation !== (this.stmts.incarnation.get(name)?.incarnation ?? 0)) return;
        const current = this.stmts.snapshot.get(name);
        if (current && through <= current.through) return;
        this.stmts.upsertSnapshot.run(name, through, snapshot);
        this.stmts.trimLog.run(name, through);
      }).immediate(), // reads first: see flush
    );
  }

  /**
   * Committed at once, in its own transaction: before any append queued after it (group commit
   * runs on a later turn). Claims are rare (a new client id), so the extra commit is too.
   */
  async claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    this.assertOpen();
    return this.run('claimClients', () =>
      this.db.transaction((): ClientClaimConflict[] => {
        const conflicts: ClientClaimConflict[] = [];
        for (const clientId of clientIds) {
          if (this.stmts.claimClient.run(name, clientId, owner).changes > 0) continue;
          const current = this.stmts.clientOwner.get(name, clientId)!.owner;
          if (current !== owner) conflicts.push({ clientId, owner: current });
        }
        return conflicts;
      })(),
    );
  }

  async loadClientOwners(name: string): Promise<[number, string][]> {
    this.assertOpen();
    return this.run('loadClientOwners', () => this.stmts.clientOwners.all(name).map((r): [number, string] => [r.client, r.owner]));
  }

  /**
   * One transaction, committed at once: appends queued before it (this turn's batch) were
   * called earlier but commit later, so they carry their incarnation and are refused if it is
   * the old one (see `flush`); the relay passes it with every append.
   */
  async delete(name: string): Promise<number> {
    this.assertOpen();
    return this.run('delete', () =>
      this.db.transaction(() => {
        this.stmts.deleteClientOwners.run(name);
        this.stmts.deleteLog.run(name);
        this.stmts.deleteSnapshot.run(name);
        return this.stmts.raiseIncarnation.get(name)!.incarnation;
      })(),
    );
  }

  async ping(): Promise<void> {
    this.assertOpen();
    this.run('ping', () => this.stmts.ping.get());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db.close();
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw new StorageError(`${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('SQLite store is closed');
  }
}

/** A Uint8Array view of a Buffer row value (Yjs wants plain Uint8Arrays, not Buffers). */
function toBytes(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
