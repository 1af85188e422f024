/**
 * WebhookDispatcher against a memory queue and real local endpoints (from a hostile review of
 * issue 14): the queue bound under a burst, a dead endpoint not starving a healthy one, and a
 * held event released while its delivery is in flight not sent twice under one id.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';
import { afterEach, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { WebhookDispatcher } from '../src/webhooks/webhook-dispatcher.js';
import { WebhookMetrics } from '../src/webhooks/webhook-metrics.js';
import { resolveWebhookOptions, type WebhookOptions } from '../src/webhooks/webhook-options.js';
import { MemoryWebhookQueue } from '../src/webhooks/webhook-queue.js';
import { waitForEvent } from '../../../test/support/wait.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Hit = { at: number; id: string; body: string };
/** Every endpoint's hits, as they come (tests wait on it instead of sleeping). */
const hitEvents = new EventEmitter();
async function endpoint(answer: (hit: Hit) => 'hang' | number | Promise<number>): Promise<{ url: string; hits: Hit[] }> {
  const hits: Hit[] = [];
  const open = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const hit = { at: Date.now(), id: String(req.headers['webhook-id']), body };
      hits.push(hit);
      hitEvents.emit('hit');
      const a = answer(hit);
      if (a === 'hang') {
        open.add(res);
        return;
      }
      void Promise.resolve(a).then((status) => res.writeHead(status).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => {
    for (const r of open) r.destroy();
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, hits };
}

function dispatcher(o: WebhookOptions, queue = new MemoryWebhookQueue()): { d: WebhookDispatcher; queue: MemoryWebhookQueue } {
  const d = new WebhookDispatcher(queue, resolveWebhookOptions(o)!, new WebhookMetrics(new client.Registry()), createLogger('silent'), 'relay-test');
  cleanups.push(() => d.close());
  d.start();
  return { d, queue };
}


/** Resolves once `check` holds, checked at every hit of any endpoint. */
function untilHits(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  return waitForEvent(hitEvents, 'hit', () => check() || undefined, what, timeoutMs).then(() => {});
}

it('the queue bound holds for events published at once (the depth is counted before each write)', async () => {
  const sink = await endpoint(() => 'hang');
  const { d, queue } = dispatcher({ endpoints: [sink.url], secret: 's', maxQueued: 10, concurrency: 1, timeoutMs: 60_000 });
  const accepted = await Promise.all(Array.from({ length: 200 }, (_, i) => d.publish('connection.opened', { docName: `d${i}` })));
  expect((await queue.stats()).depth).toBeLessThanOrEqual(10);
  expect(accepted.filter(Boolean).length).toBe(10);
});

it('an endpoint that never answers does not starve the others: after a few failed attempts its deliveries wait for its next probe', async () => {
  const dead = await endpoint(() => 'hang');
  const healthy = await endpoint(() => 200);
  const { d } = dispatcher({
    endpoints: [{ url: dead.url, events: ['connection.opened'] }, { url: healthy.url, events: ['connection.closed'] }],
    secret: 's',
    concurrency: 2,
    timeoutMs: 500,
    retryBaseMs: 60_000,
  });
  for (let i = 0; i < 20; i++) await d.publish('connection.opened', { docName: `d${i}` });
  await d.publish('connection.closed', { docName: 'x' });
  await untilHits(() => healthy.hits.length === 1, 'the healthy endpoint served');
  // Without the breaker each of the 20 first attempts would hold a slot for its whole timeout first.
  expect(dead.hits.length).toBeLessThanOrEqual(4);
});

it('a held event released while its delivery is being attempted goes out as a new event: never two bodies under one webhook-id', async () => {
  let answerFirst: (status: number) => void = () => {};
  const sink = await endpoint(() => (sink.hits.length === 1 ? new Promise<number>((r) => (answerFirst = r)) : 200));
  const { d } = dispatcher({ endpoints: [sink.url], secret: 's', timeoutMs: 5_000 });
  const held = await d.hold('document.changed', { docName: 'n', v: 'held' }, Date.now() + 50);
  expect(held).not.toBeNull();
  await untilHits(() => sink.hits.length === 1, 'the held event attempted at its due time');
  await d.release(held!, { docName: 'n', v: 'released' });
  await untilHits(() => sink.hits.length === 2, 'the released data sent');
  answerFirst(200);
  const bodiesById = new Map<string, Set<string>>();
  for (const h of sink.hits) bodiesById.set(h.id, (bodiesById.get(h.id) ?? new Set()).add((JSON.parse(h.body) as { data: { v: string } }).data.v));
  expect([...bodiesById.values()].map((s) => [...s])).toEqual([['held'], ['released']]);
});
