import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { WebhookMetrics } from './webhook-metrics.js';
import type { ResolvedWebhookOptions, WebhookEventType } from './webhook-options.js';
import type { WebhookDelivery, WebhookQueue, WebhookQueueStats } from './webhook-queue.js';
import { signWebhook, webhookKey } from './webhook-signature.js';

/**
 * How often the queue is looked at with nothing due here: deliveries another relay of the
 * cluster queued and leases a relay that died left behind become due without waking this one.
 */
const POLL_MS = 5_000;
/**
 * A claimed delivery stays hidden for twice its attempt's timeout and this much more: long enough
 * for the attempt and the write of its outcome, short enough that what a relay that died
 * mid-attempt had claimed is tried again soon after a restart (or by another relay).
 */
const LEASE_MARGIN_MS = 5_000;
/** The queue's stats (depth, oldest, next due) are read at most this often... */
const STATS_MS = 1_000;
/** ...and the queue is never looked at again sooner than this after a look that found nothing due. */
const MIN_DELAY_MS = 100;
/** Wait after the queue could not be read, before trying again. */
const STORAGE_RETRY_MS = 1_000;

/**
 * Sends the queued webhook deliveries: each event is written to the queue (durable) before
 * anything is attempted, then claimed, POSTed signed, and removed once the endpoint answered
 * 2xx. A failed attempt (an error, a timeout, any other status; redirects are not followed) is
 * tried again with exponential backoff and jitter (`Retry-After` respected, within the cap)
 * until the delivery is older than `expireMs`: then it is dropped, logged and counted as failed.
 * At most `concurrency` attempts run at once; what the endpoints answer is never read.
 */
export class WebhookDispatcher {
  private readonly key: Buffer;
  private readonly attempts = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | null = null;
  private pumping = false;
  private again = false;
  private closed = false;
  private stats: WebhookQueueStats = { depth: 0, oldestCreatedAt: null, nextDueAt: null };
  private statsAt = 0;

  constructor(
    private readonly queue: WebhookQueue,
    private readonly o: ResolvedWebhookOptions,
    private readonly metrics: WebhookMetrics,
    private readonly logger: Logger,
    private readonly relayId: string,
  ) {
    this.key = webhookKey(o.secret);
    metrics.queueSource = () => this.stats;
  }

  /** Starts delivering what the queue holds (left by an earlier run, or by other relays). */
  start(): void {
    this.wake();
  }

  /** Whether some endpoint takes events of `type` (so callers can skip building the data). */
  wants(type: WebhookEventType): boolean {
    return this.o.endpoints.some((e) => e.events === 'all' || e.events.includes(type));
  }

  /**
   * Queues event `type` for every endpoint that takes it; resolves once it is durable (true), or
   * false when it was refused: the queue is full (`maxQueued`) or could not be written. Never rejects.
   */
  async publish(type: WebhookEventType, data: Record<string, unknown>): Promise<boolean> {
    return (await this.queueEvent(type, data, undefined)) !== null || !this.wants(type);
  }

  /**
   * Queues event `type` ahead of time, due at `dueAt` unless `release` makes it due sooner: so
   * an event the relay means to send later (a debounced document.changed) is sent even if the
   * relay dies before. Resolves with what `release` needs; null when refused (or nobody wants it).
   */
  hold(type: WebhookEventType, data: Record<string, unknown>, dueAt: number): Promise<HeldEvent | null> {
    return this.queueEvent(type, data, dueAt);
  }

  /** Makes a held event due now, with `data` in place of what it was held with. Never rejects. */
  async release(held: HeldEvent, data: Record<string, unknown>): Promise<void> {
    const body = eventBody(held.eventId, held.type, held.createdAt, this.relayId, data);
    const now = Date.now();
    try {
      for (const id of held.deliveryIds) await this.queue.rewrite(id, body, now);
    } catch (err) {
      // It stays held: sent at its due time, with what it was held with.
      this.logger.warn({ type: held.type, err }, 'a held webhook event could not be released; it goes out at its due time');
      return;
    }
    this.dueBy(now);
    this.wake();
  }

  private async queueEvent(type: WebhookEventType, data: Record<string, unknown>, nextAt: number | undefined): Promise<HeldEvent | null> {
    const endpoints = this.o.endpoints.filter((e) => e.events === 'all' || e.events.includes(type));
    if (endpoints.length === 0 || this.closed) return null;
    if (this.stats.depth + endpoints.length > this.o.maxQueued) {
      this.metrics.refused.inc({ reason: 'queue-full' });
      this.logger.error({ type, depth: this.stats.depth, maxQueued: this.o.maxQueued }, 'webhook queue full: event not queued');
      return null;
    }
    const eventId = randomUUID();
    const createdAt = Date.now();
    const body = eventBody(eventId, type, createdAt, this.relayId, data);
    const deliveries = endpoints.map((e) => ({ id: randomUUID(), eventId, url: e.url, body, createdAt, ...(nextAt !== undefined ? { nextAt } : {}) }));
    try {
      await this.queue.enqueue(deliveries);
    } catch (err) {
      this.metrics.refused.inc({ reason: 'storage' });
      this.logger.error({ type, err }, 'webhook event could not be queued');
      return null;
    }
    this.stats = { ...this.stats, depth: this.stats.depth + endpoints.length, oldestCreatedAt: this.stats.oldestCreatedAt ?? createdAt };
    this.dueBy(nextAt ?? createdAt);
    this.wake();
    return { type, eventId, createdAt, deliveryIds: deliveries.map((d) => d.id) };
  }

  /** Stops claiming; attempts under way are cut short and left due at once for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.abort.abort();
    await Promise.allSettled([...this.attempts]);
  }

  /** A delivery left the queue: the depth known here follows until the next read of the stats. */
  private removed(): void {
    this.stats = { ...this.stats, depth: Math.max(0, this.stats.depth - 1) };
    if (this.stats.depth === 0) this.stats = { depth: 0, oldestCreatedAt: null, nextDueAt: null };
  }

  /** Something is due by `at` (queued or rescheduled here): the timer must not sleep past it. */
  private dueBy(at: number): void {
    if (this.stats.nextDueAt === null || at < this.stats.nextDueAt) this.stats = { ...this.stats, nextDueAt: at };
  }

  private wake(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    let delay: number | null;
    try {
      do {
        this.again = false;
        const free = this.o.concurrency - this.attempts.size;
        if (free <= 0) break; // an attempt that ends wakes the pump
        const claimed = await this.queue.claim(Date.now(), free, 2 * this.o.timeoutMs + LEASE_MARGIN_MS);
        for (const d of claimed) this.attempt(d);
        if (claimed.length === free) this.again = true;
      } while (this.again && !this.closed);
      // The queue's stats cost a scan: read at most every STATS_MS, or every MIN_DELAY_MS while
      // what we know says something is due that the claim did not find (stale: claimed meanwhile).
      const since = Date.now() - this.statsAt;
      const stale = this.stats.nextDueAt !== null && this.stats.nextDueAt <= Date.now();
      if (since >= (stale ? MIN_DELAY_MS : STATS_MS)) {
        this.stats = await this.queue.stats();
        this.statsAt = Date.now();
      }
      const due = (this.stats.nextDueAt ?? Infinity) - Date.now();
      delay = this.attempts.size >= this.o.concurrency ? null : Math.min(POLL_MS, Math.max(MIN_DELAY_MS, due));
    } catch (err) {
      this.logger.warn({ err }, 'webhook queue could not be read; trying again');
      delay = STORAGE_RETRY_MS;
    } finally {
      this.pumping = false;
    }
    if (this.closed) return;
    if (this.again) return this.wake();
    if (delay === null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.wake();
    }, delay);
    this.timer.unref();
  }

  private attempt(d: WebhookDelivery): void {
    const p: Promise<void> = this.deliver(d).finally(() => {
      this.attempts.delete(p);
      this.wake();
    });
    this.attempts.add(p);
  }

  private async deliver(d: WebhookDelivery): Promise<void> {
    const started = Date.now();
    let failure: string | null = null;
    let retryAfterMs = 0;
    try {
      const res = await fetch(d.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'capsync-webhooks', ...signWebhook(this.key, d.eventId, d.body, started) },
        body: d.body,
        redirect: 'manual',
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.o.timeoutMs)]),
      });
      await res.body?.cancel().catch(() => {});
      if (res.status < 200 || res.status > 299) {
        failure = `HTTP ${res.status}`;
        retryAfterMs = retryAfter(res.headers.get('retry-after'), started);
      }
    } catch (err) {
      failure = (err as Error).name === 'TimeoutError' ? `no answer within ${this.o.timeoutMs} ms` : (err as Error).message;
    }
    try {
      if (failure === null) {
        await this.queue.remove(d.id);
        this.removed();
        this.metrics.deliveries.inc({ outcome: 'delivered' });
        return;
      }
      if (this.abort.signal.aborted) {
        // Cut short by close: due at once for the next start, not counted as an attempt.
        await this.queue.retryAt(d.id, d.attempts, Date.now());
        return;
      }
      const attempts = d.attempts + 1;
      const nextAt = Date.now() + Math.min(this.o.retryMaxMs, Math.max(retryAfterMs, backoffMs(attempts, this.o.retryBaseMs, this.o.retryMaxMs)));
      if (nextAt - d.createdAt > this.o.expireMs) {
        await this.queue.remove(d.id);
        this.removed();
        this.metrics.deliveries.inc({ outcome: 'failed' });
        this.logger.error({ url: d.url, eventId: d.eventId, attempts, failure }, 'webhook delivery expired: given up');
        return;
      }
      await this.queue.retryAt(d.id, attempts, nextAt);
      this.dueBy(nextAt);
      this.metrics.deliveries.inc({ outcome: 'retried' });
      this.logger.warn({ url: d.url, eventId: d.eventId, attempts, failure, retryInMs: nextAt - Date.now() }, 'webhook delivery failed; will retry');
    } catch (err) {
      // Its lease lapses and it is attempted again: at least once, never lost.
      this.logger.error({ eventId: d.eventId, err }, 'webhook queue could not be updated after an attempt');
    }
  }
}

/** An event queued ahead by `hold`. */
export interface HeldEvent {
  type: WebhookEventType;
  eventId: string;
  createdAt: number;
  deliveryIds: string[];
}

function eventBody(id: string, type: WebhookEventType, createdAt: number, relayId: string, data: Record<string, unknown>): string {
  return JSON.stringify({ id, type, createdAt: new Date(createdAt).toISOString(), relayId, data });
}

/** Exponential backoff with equal jitter: half the delay fixed, half random (spreads a herd of retries). */
export function backoffMs(attempts: number, baseMs: number, maxMs: number): number {
  const delay = Math.min(maxMs, baseMs * 2 ** Math.min(attempts - 1, 40));
  return delay / 2 + Math.random() * (delay / 2);
}

/** A `Retry-After` header (seconds or an HTTP date) in ms from `now`; 0 when absent or unreadable. */
function retryAfter(header: string | null, now: number): number {
  if (!header) return 0;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(0, at - now) : 0;
}
