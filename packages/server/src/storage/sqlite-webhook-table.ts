import type Database from 'better-sqlite3';
import { StorageError } from '@capsync/core';
import type { NewWebhookDelivery, WebhookDelivery, WebhookQueue, WebhookQueueStats } from '../webhooks/webhook-queue.js';

/**
 * The webhook outbox in the relay's SQLite database (the contract in webhook-queue.ts). Each call
 * is one transaction, committed with the database's synchronous setting before it returns, so
 * an enqueued delivery survives a crash like an acknowledged update. One relay owns a SQLite
 * file, so a claim needs no more than its transaction to be exclusive.
 */
export class SqliteWebhookTable implements WebhookQueue {
  private readonly stmts;
  private readonly enqueueTx;
  private readonly claimTx;

  constructor(db: Database.Database) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        url TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        seq INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_at, seq);
    `);
    type Row = { id: string; event_id: string; url: string; body: string; created_at: number; attempts: number };
    this.stmts = {
      insert: db.prepare<[string, string, string, string, number, number]>(
        `INSERT INTO webhook_deliveries (id, event_id, url, body, created_at, next_at, seq)
         VALUES (?, ?, ?, ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM webhook_deliveries))
         ON CONFLICT (id) DO NOTHING`,
      ),
      due: db.prepare<[number, number], Row>(
        'SELECT id, event_id, url, body, created_at, attempts FROM webhook_deliveries WHERE next_at <= ? ORDER BY next_at, seq LIMIT ?',
      ),
      lease: db.prepare<[number, string]>('UPDATE webhook_deliveries SET next_at = ? WHERE id = ?'),
      remove: db.prepare<[string]>('DELETE FROM webhook_deliveries WHERE id = ?'),
      retry: db.prepare<[number, number, string]>('UPDATE webhook_deliveries SET attempts = ?, next_at = ? WHERE id = ?'),
      rewrite: db.prepare<[string, number, string, number]>('UPDATE webhook_deliveries SET body = ?, next_at = ? WHERE id = ? AND attempts = 0 AND next_at = ?'),
      stats: db.prepare<[], { depth: number; oldest: number | null; next: number | null }>(
        'SELECT count(*) AS depth, min(created_at) AS oldest, min(next_at) AS next FROM webhook_deliveries',
      ),
    };
    this.enqueueTx = db.transaction((deliveries: readonly NewWebhookDelivery[]) => {
      for (const d of deliveries) this.stmts.insert.run(d.id, d.eventId, d.url, d.body, d.createdAt, d.nextAt ?? d.createdAt);
    });
    this.claimTx = db.transaction((now: number, limit: number, leaseMs: number): WebhookDelivery[] => {
      const rows = this.stmts.due.all(now, limit);
      for (const r of rows) this.stmts.lease.run(now + leaseMs, r.id);
      return rows.map((r) => ({ id: r.id, eventId: r.event_id, url: r.url, body: r.body, createdAt: r.created_at, attempts: r.attempts }));
    });
  }

  async enqueue(deliveries: readonly NewWebhookDelivery[]): Promise<void> {
    this.run('queuing webhook deliveries', () => this.enqueueTx(deliveries));
  }
  async claim(now: number, limit: number, leaseMs: number): Promise<WebhookDelivery[]> {
    // IMMEDIATE: it reads before it writes (see SqliteDocStore.flush).
    return this.run('claiming webhook deliveries', () => this.claimTx.immediate(now, limit, leaseMs));
  }
  async remove(id: string): Promise<void> {
    this.run('removing a webhook delivery', () => this.stmts.remove.run(id));
  }
  async retryAt(id: string, attempts: number, nextAt: number): Promise<void> {
    this.run('rescheduling a webhook delivery', () => this.stmts.retry.run(attempts, nextAt, id));
  }
  async rewrite(id: string, body: string, nextAt: number, heldUntil: number): Promise<boolean> {
    return this.run('rewriting a webhook delivery', () => this.stmts.rewrite.run(body, nextAt, id, heldUntil).changes === 1);
  }
  async stats(): Promise<WebhookQueueStats> {
    const r = this.run('reading the webhook queue', () => this.stmts.stats.get()!);
    return { depth: r.depth, oldestCreatedAt: r.oldest, nextDueAt: r.next };
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw new StorageError(`${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}
