import type pg from 'pg';
import type { NewWebhookDelivery, WebhookDelivery, WebhookQueue, WebhookQueueStats } from '../webhooks/webhook-queue.js';
import { storageError } from './postgres-errors.js';

/**
 * The webhook outbox in PostgreSQL (table capsync_webhook_deliveries, migration in
 * postgres-schema.ts), shared by every relay of a cluster: whichever relay is up delivers what
 * any of them queued, also what a relay that died had claimed (once its lease lapses). A claim
 * is one UPDATE over rows taken `FOR UPDATE SKIP LOCKED`, so relays claiming at once split the
 * due rows instead of waiting on each other or taking the same ones. Times are the claiming
 * relay's clock (ms); leases are far longer than the skew between relays' clocks.
 */
export class PostgresWebhookQueue implements WebhookQueue {
  constructor(private readonly pool: pg.Pool) {}

  async enqueue(deliveries: readonly NewWebhookDelivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    await this.query(
      'queuing webhook deliveries',
      `INSERT INTO capsync_webhook_deliveries (id, event_id, url, body, created_at, next_at)
       SELECT id, event_id, url, body, created_at, next_at
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS d(id, event_id, url, body, created_at, next_at)
       ON CONFLICT (id) DO NOTHING`,
      [deliveries.map((d) => d.id), deliveries.map((d) => d.eventId), deliveries.map((d) => d.url), deliveries.map((d) => d.body), deliveries.map((d) => d.createdAt), deliveries.map((d) => d.nextAt ?? d.createdAt)],
    );
  }

  async claim(now: number, limit: number, leaseMs: number): Promise<WebhookDelivery[]> {
    const { rows } = await this.query<{ id: string; event_id: string; url: string; body: string; created_at: string; attempts: number; due_at: string; seq: string }>(
      'claiming webhook deliveries',
      `WITH due AS (
         SELECT id, next_at AS due_at, seq FROM capsync_webhook_deliveries
         WHERE next_at <= $1 ORDER BY next_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED
       )
       UPDATE capsync_webhook_deliveries d SET next_at = $1::bigint + $3::bigint FROM due WHERE d.id = due.id
       RETURNING d.id, d.event_id, d.url, d.body, d.created_at, d.attempts, due.due_at, due.seq`,
      [now, limit, leaseMs],
    );
    // RETURNING keeps no order: oldest due first, as the contract says.
    rows.sort((a, b) => Number(a.due_at) - Number(b.due_at) || Number(a.seq) - Number(b.seq));
    return rows.map((r) => ({ id: r.id, eventId: r.event_id, url: r.url, body: r.body, createdAt: Number(r.created_at), attempts: r.attempts }));
  }

  async remove(id: string): Promise<void> {
    await this.query('removing a webhook delivery', 'DELETE FROM capsync_webhook_deliveries WHERE id = $1', [id]);
  }

  async retryAt(id: string, attempts: number, nextAt: number): Promise<void> {
    await this.query('rescheduling a webhook delivery', 'UPDATE capsync_webhook_deliveries SET attempts = $2, next_at = $3 WHERE id = $1', [id, attempts, nextAt]);
  }

  async rewrite(id: string, body: string, nextAt: number): Promise<void> {
    await this.query('rewriting a webhook delivery', 'UPDATE capsync_webhook_deliveries SET body = $2, next_at = $3 WHERE id = $1', [id, body, nextAt]);
  }

  async stats(): Promise<WebhookQueueStats> {
    const { rows } = await this.query<{ depth: string; oldest: string | null; next: string | null }>(
      'reading the webhook queue',
      'SELECT count(*) AS depth, min(created_at) AS oldest, min(next_at) AS next FROM capsync_webhook_deliveries',
    );
    const r = rows[0]!;
    return { depth: Number(r.depth), oldestCreatedAt: r.oldest === null ? null : Number(r.oldest), nextDueAt: r.next === null ? null : Number(r.next) };
  }

  private async query<R extends pg.QueryResultRow>(what: string, text: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, params);
    } catch (err) {
      throw storageError(what, err);
    }
  }
}
