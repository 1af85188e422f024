import client from 'prom-client';

/** The webhook metrics, registered in the relay's registry (see RelayMetrics). */
export class WebhookMetrics {
  readonly deliveries;
  readonly refused;
  /** Where the gauges read the queue at each scrape (the dispatcher's last look at it). */
  queueSource: () => { depth: number; oldestCreatedAt: number | null } = () => ({ depth: 0, oldestCreatedAt: null });

  constructor(registry: client.Registry) {
    this.deliveries = new client.Counter({
      name: 'capsync_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome: delivered (2xx), retried (failed, will try again), failed (given up: expired)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    });
    this.refused = new client.Counter({
      name: 'capsync_webhook_refused_total',
      help: 'Webhook events not queued, by reason: queue-full (--webhook-max-queued reached), storage (the queue could not be written)',
      labelNames: ['reason'] as const,
      registers: [registry],
    });
    const depth: client.Gauge = new client.Gauge({
      name: 'capsync_webhook_queue_depth',
      help: 'Webhook deliveries queued and not yet acknowledged (every relay sharing the storage)',
      registers: [registry],
      collect: (): void => depth.set(this.queueSource().depth),
    });
    const oldest: client.Gauge = new client.Gauge({
      name: 'capsync_webhook_oldest_age_seconds',
      help: 'Age of the oldest queued webhook delivery (0 when none waits)',
      registers: [registry],
      collect: (): void => {
        const at = this.queueSource().oldestCreatedAt;
        oldest.set(at === null ? 0 : Math.max(0, (Date.now() - at) / 1000));
      },
    });
  }
}
