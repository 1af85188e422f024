/**
 * The durable outbox of webhook deliveries. A delivery is queued here before it is attempted
 * and leaves only once its endpoint acknowledged it or it expired, so a relay restart or crash
 * (SIGKILL) never loses one: the next relay on the same storage delivers it. Implementations:
 * memory (a relay on `storage: memory`: nothing survives its process anyway), the relay's SQLite
 * database (SqliteWebhookTable), PostgreSQL (PostgresWebhookQueue, shared by every relay of a
 * cluster). `webhookQueueConformance` checks the contract; every implementation runs it.
 *
 * Contract:
 * - `enqueue` resolves only once every given delivery is durable (committed like a document
 *   append: a crash right after cannot lose it); rejects (StorageError) when none was stored.
 * - `claim(now, limit, leaseMs)` takes up to `limit` deliveries due at `now` (next attempt at or
 *   before it), the oldest due first, and hides each for `leaseMs` (its next attempt moves to
 *   `now + leaseMs`), in one atomic step: two claims, from this relay or another one sharing the
 *   storage, never return the same delivery while its lease runs. A claimed delivery that is
 *   neither removed nor rescheduled (its relay died) is due again when its lease ends, so it is
 *   attempted again: delivery is at least once, and receivers deduplicate by `eventId`.
 * - `remove(id)` drops a delivery (acknowledged, or given up); `retryAt(id, attempts, nextAt)`
 *   records a failed attempt; `rewrite(id, body, nextAt)` replaces the body of a delivery queued
 *   ahead of time (see `nextAt`) and when it is due. All are no-ops for an unknown id.
 * - `stats(now)`: how many deliveries wait, when the oldest was created, and when the earliest
 *   next attempt is due (null when empty), for the metrics and the dispatcher's timer.
 */
export interface WebhookQueue {
  enqueue(deliveries: readonly NewWebhookDelivery[]): Promise<void>;
  claim(now: number, limit: number, leaseMs: number): Promise<WebhookDelivery[]>;
  remove(id: string): Promise<void>;
  retryAt(id: string, attempts: number, nextAt: number): Promise<void>;
  rewrite(id: string, body: string, nextAt: number): Promise<void>;
  stats(): Promise<WebhookQueueStats>;
}

export interface NewWebhookDelivery {
  /** Unique id of this delivery (one event to one endpoint). */
  id: string;
  /** The event's id, the same for every endpoint and every attempt: the receiver's idempotency key. */
  eventId: string;
  url: string;
  /** The JSON body, signed and sent byte for byte on every attempt. */
  body: string;
  /** When the event happened (ms since the epoch); the delivery expires relative to it. */
  createdAt: number;
  /** When it is first due; default `createdAt`. Later for a delivery queued ahead, in case nothing rewrites it. */
  nextAt?: number;
}

export interface WebhookDelivery extends NewWebhookDelivery {
  /** Attempts made and failed so far. */
  attempts: number;
}

export interface WebhookQueueStats {
  depth: number;
  oldestCreatedAt: number | null;
  nextDueAt: number | null;
}

/** The queue of a memory relay: the same contract, kept in this process only. */
export class MemoryWebhookQueue implements WebhookQueue {
  private readonly rows = new Map<string, WebhookDelivery & { nextAt: number; seq: number }>();
  private seq = 0;

  async enqueue(deliveries: readonly NewWebhookDelivery[]): Promise<void> {
    for (const d of deliveries) {
      if (!this.rows.has(d.id)) this.rows.set(d.id, { id: d.id, eventId: d.eventId, url: d.url, body: d.body, createdAt: d.createdAt, attempts: 0, nextAt: d.nextAt ?? d.createdAt, seq: this.seq++ });
    }
  }

  async claim(now: number, limit: number, leaseMs: number): Promise<WebhookDelivery[]> {
    const due = [...this.rows.values()].filter((r) => r.nextAt <= now).sort((a, b) => a.nextAt - b.nextAt || a.seq - b.seq).slice(0, limit);
    for (const r of due) r.nextAt = now + leaseMs;
    return due.map(({ nextAt: _n, seq: _s, ...d }) => ({ ...d }));
  }

  async remove(id: string): Promise<void> {
    this.rows.delete(id);
  }

  async retryAt(id: string, attempts: number, nextAt: number): Promise<void> {
    const r = this.rows.get(id);
    if (r) Object.assign(r, { attempts, nextAt });
  }

  async rewrite(id: string, body: string, nextAt: number): Promise<void> {
    const r = this.rows.get(id);
    if (r) Object.assign(r, { body, nextAt });
  }

  async stats(): Promise<WebhookQueueStats> {
    let oldestCreatedAt: number | null = null;
    let nextDueAt: number | null = null;
    for (const r of this.rows.values()) {
      if (oldestCreatedAt === null || r.createdAt < oldestCreatedAt) oldestCreatedAt = r.createdAt;
      if (nextDueAt === null || r.nextAt < nextDueAt) nextDueAt = r.nextAt;
    }
    return { depth: this.rows.size, oldestCreatedAt, nextDueAt };
  }
}
