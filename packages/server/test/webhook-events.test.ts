/**
 * The webhook events made from the relay's hooks (webhook-events.ts), against a queue that
 * records the order its writes were made in (review of the twelfth session): a document's first
 * change queues document.created and holds its document.changed in the same turn as the change,
 * as the change's own append is made (a SQLite store writes in that order), so both are durable
 * before the change can be acknowledged; and created is never created after the held changed.
 */
import client from 'prom-client';
import { afterEach, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { WebhookDispatcher } from '../src/webhooks/webhook-dispatcher.js';
import { webhookHooks } from '../src/webhooks/webhook-events.js';
import { WebhookMetrics } from '../src/webhooks/webhook-metrics.js';
import { resolveWebhookOptions } from '../src/webhooks/webhook-options.js';
import { MemoryWebhookQueue, type NewWebhookDelivery } from '../src/webhooks/webhook-queue.js';

/** Records what each write queued, in the order the writes were made; each completes a turn later. */
class RecordingQueue extends MemoryWebhookQueue {
  readonly writes: { type: string; docName: string; createdAt: number }[] = [];
  override async enqueue(deliveries: readonly NewWebhookDelivery[]): Promise<void> {
    for (const d of deliveries) {
      const body = JSON.parse(d.body) as { type: string; data: { docName: string } };
      this.writes.push({ type: body.type, docName: body.data.docName, createdAt: d.createdAt });
    }
    await new Promise((r) => setImmediate(r));
    return super.enqueue(deliveries);
  }
}

const dispatchers: WebhookDispatcher[] = [];
afterEach(async () => {
  for (const d of dispatchers.splice(0)) await d.close();
});

function setup() {
  const queue = new RecordingQueue();
  // A closed port: nothing is delivered (the queue is what is looked at).
  const o = resolveWebhookOptions({ endpoints: ['http://127.0.0.1:9/hook'], secret: 'webhook-events-secret' })!;
  const dispatcher = new WebhookDispatcher(queue, o, new WebhookMetrics(new client.Registry()), createLogger('silent'), 'relay-a');
  dispatchers.push(dispatcher);
  const hooks = webhookHooks(dispatcher, o, { url: () => 'http://relay', maxJsonDepth: 64, changeDebounceMs: 1000, changeMaxWaitMs: 10_000, hookTimeoutMs: 5000 });
  return { queue, hooks };
}

it("a new document's first change queues document.created and holds document.changed in the turn of the change (before its append, so before its ack)", async () => {
  const { queue, hooks } = setup();
  await hooks.onLoadDocument!({ docName: 'fresh' } as never);
  const pending = hooks.onChangePending!({ docName: 'fresh' });
  // What the relay writes next in this turn: the change itself.
  queue.writes.push({ type: '<the change>', docName: 'fresh', createdAt: 0 });
  await pending;
  expect(queue.writes.map((w) => w.type)).toEqual(['document.created', 'document.changed', '<the change>']);
});

it('document.created is never created after the document.changed it precedes', async () => {
  const { queue, hooks } = setup();
  for (let i = 0; i < 200; i++) {
    await hooks.onLoadDocument!({ docName: `d${i}` } as never);
    await hooks.onChangePending!({ docName: `d${i}` });
  }
  for (let i = 0; i < 200; i++) {
    const of = (type: string) => queue.writes.find((w) => w.type === type && w.docName === `d${i}`)!;
    expect(of('document.created').createdAt).toBeLessThanOrEqual(of('document.changed').createdAt);
  }
});
