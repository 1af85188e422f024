import type { DocStore } from '@capsync/core';
import type { ResolvedRelayOptions } from '../config.js';
import type { RelayHooks } from '../hooks/relay-hooks.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import { WebhookDispatcher } from './webhook-dispatcher.js';
import { webhookHooks } from './webhook-events.js';
import { WebhookMetrics } from './webhook-metrics.js';
import { MemoryWebhookQueue, type WebhookQueue } from './webhook-queue.js';

export interface RelayWebhooks {
  /** The hooks that turn the relay's events into webhook events (composed with the app's). */
  hooks: RelayHooks;
  dispatcher: WebhookDispatcher;
}

/**
 * The relay's webhooks, when configured: the queue is the store's own (SQLite file, PostgreSQL
 * database), so deliveries outlive the process; a store without one (memory, a custom DocStore)
 * gets a memory queue, with a warning.
 */
export function relayWebhooks(o: ResolvedRelayOptions, store: DocStore, metrics: RelayMetrics, logger: Logger, relayUrl: () => string): RelayWebhooks | undefined {
  if (!o.webhooks) return undefined;
  const own = (store as { webhooks?: WebhookQueue }).webhooks;
  if (!own) logger.warn('webhook deliveries are queued in memory (this storage keeps no queue): a restart loses the undelivered ones');
  const dispatcher = new WebhookDispatcher(own ?? new MemoryWebhookQueue(), o.webhooks, new WebhookMetrics(metrics.registry), logger, o.relayId);
  return { dispatcher, hooks: webhookHooks(dispatcher, o.webhooks, { url: relayUrl, maxJsonDepth: o.maxJsonDepth, changeDebounceMs: o.changeDebounceMs, changeMaxWaitMs: o.changeMaxWaitMs, hookTimeoutMs: o.hookTimeoutMs }) };
}
