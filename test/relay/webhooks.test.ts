/**
 * Webhooks (issue 14): events POSTed to real local HTTP endpoints, signed (checked here with
 * verifyWebhook, as a receiver would), retried with backoff through failures and timeouts under
 * one idempotency id, given up past their expiry, filtered per endpoint, bounded by the queue
 * size, and queued durably so a relay killed with SIGKILL delivers after its restart.
 */
import { afterEach, expect, it } from 'vitest';
import { verifyWebhook } from '@capsync/server';
import { connectAs } from '../support/client-ids.js';
import type { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, tempDir, type TestRelay } from '../support/relay-fixture.js';
import { killRelay, spawnRelay, type RelayProcess } from '../support/relay-process.js';
import { metricValue, waitForMetric, waitForMetricTo } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';
import { WebhookReceiver, type ReceivedWebhook } from '../support/webhook-receiver.js';

const secret = 'webhook-test-secret-0123456789';
const authSecret = 'webhook-auth-secret-0123456789';
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function receiver(): Promise<WebhookReceiver> {
  const r = await WebhookReceiver.start();
  cleanups.push(() => r.close());
  return r;
}
async function relayWith(options: Parameters<typeof startRelay>[0]): Promise<TestRelay> {
  const relay = await startRelay({ authSecret, changeDebounceMs: 20, ...options });
  cleanups.push(() => relay.dispose());
  return relay;
}
async function client(relay: TestRelay, doc: string, sub = 'alice'): Promise<ProtocolClient> {
  const c = await connectAs(relay.docUrl(doc), authSecret, sub);
  cleanups.push(() => c.close());
  return c;
}
const ofType = (type: string, docName?: string) => (r: ReceivedWebhook) => r.json.type === type && (!docName || r.json.data['docName'] === docName);

it('delivers signed events: connection.opened, document.created, document.changed with its JSON, connection.closed', async () => {
  const hooks = await receiver();
  const relay = await relayWith({ webhooks: { endpoints: [hooks.url], secret, document: 'json' } });
  const alice = await client(relay, 'notes');
  await alice.waitForAck(alice.type('hello'));

  const opened = await hooks.waitFor(ofType('connection.opened', 'notes'), 'connection.opened');
  expect(opened.json.data).toMatchObject({ docName: 'notes', identity: 'alice', permission: 'write' });
  const changed = await hooks.waitFor((r) => ofType('document.changed', 'notes')(r) && JSON.stringify(r.json.data['document']) === '{"t":"hello"}', 'document.changed with the text');
  expect(changed.json.data['documentUrl']).toBe(`${relay.httpUrl}/v1/docs/notes`);
  // Deliveries run concurrently, so they may arrive in any order (the README says so): the
  // created event is made before the document.changed it precedes, by createdAt.
  const created = await hooks.waitFor(ofType('document.created', 'notes'), 'document.created');
  expect(Date.parse(String(created.json.createdAt))).toBeLessThanOrEqual(Date.parse(String(changed.json.createdAt)));

  // Each delivery checks out with the secret, as a receiver checks it; a changed body, another
  // secret or an old timestamp does not.
  for (const r of hooks.received) {
    expect(verifyWebhook(secret, r.headers, r.body)).toEqual(r.json);
    expect(r.headers['webhook-id']).toBe(r.json.id);
  }
  expect(() => verifyWebhook(secret, changed.headers, changed.body.replace('hello', 'hellO'))).toThrow(expect.objectContaining({ code: 'bad-signature' }));
  expect(() => verifyWebhook('another-secret', changed.headers, changed.body)).toThrow(expect.objectContaining({ code: 'bad-signature' }));
  expect(() => verifyWebhook(secret, changed.headers, changed.body, { nowMs: Date.now() + 3_600_000 })).toThrow(expect.objectContaining({ code: 'stale-timestamp' }));

  await alice.close();
  const closed = await hooks.waitFor(ofType('connection.closed', 'notes'), 'connection.closed');
  expect(closed.json.data).toMatchObject({ docName: 'notes', identity: 'alice' });
  await waitForMetricTo(relay.httpUrl, 'capsync_webhook_queue_depth', {}, (v) => v === 0, 'queue drained');
  expect(await metricValue(relay.httpUrl, 'capsync_webhook_deliveries_total', { outcome: 'delivered' })).toBe(hooks.received.length);
  // The document.changed held from the first change was released, not sent a second time.
  expect(hooks.received.filter(ofType('document.changed'))).toHaveLength(1);
});

it('reports a deleted document (document.deleted, with the deleting identity and the new incarnation)', async () => {
  const hooks = await receiver();
  const relay = await relayWith({ webhooks: { endpoints: [{ url: hooks.url, events: ['document.deleted'] }], secret } });
  const alice = await client(relay, 'doomed-doc');
  await alice.waitForAck(alice.type('x'));
  const res = await fetch(`${relay.httpUrl}/v1/docs/doomed-doc`, { method: 'DELETE', headers: { authorization: `Bearer ${await mintToken(authSecret, { sub: 'admin' })}` } });
  expect(res.status).toBe(200);
  const deleted = await hooks.waitFor(ofType('document.deleted', 'doomed-doc'), 'document.deleted');
  expect(deleted.json.data).toEqual({ docName: 'doomed-doc', identity: 'admin', incarnation: 1 });
  expect(hooks.received.every(ofType('document.deleted'))).toBe(true);
});

it('retries a failing endpoint with backoff (500, then no answer past the timeout, then 200) under one event id, signed afresh', async () => {
  const hooks = await receiver();
  const attempts = new Map<string, number>();
  hooks.answer = (r) => {
    if (r.json.type !== 'document.changed') return 200;
    const n = (attempts.get(r.json.id) ?? 0) + 1;
    attempts.set(r.json.id, n);
    return n === 1 ? 500 : n === 2 ? 'hang' : 200;
  };
  const relay = await relayWith({ webhooks: { endpoints: [hooks.url], secret, timeoutMs: 300, retryBaseMs: 50, retryMaxMs: 200 } });
  const alice = await client(relay, 'retry');
  await alice.waitForAck(alice.type('x'));

  const delivered = await hooks.waitFor((r) => ofType('document.changed', 'retry')(r) && r.answered === 200, 'document.changed acknowledged on its third attempt');
  const tries = hooks.received.filter((r) => r.json.id === delivered.json.id);
  expect(tries.map((r) => r.answered)).toEqual([500, 'hang', 200]);
  expect(new Set(tries.map((r) => r.body)).size).toBe(1); // the same body every time
  for (const r of tries) expect(verifyWebhook(secret, r.headers, r.body)).toEqual(delivered.json);
  expect(await metricValue(relay.httpUrl, 'capsync_webhook_deliveries_total', { outcome: 'retried' })).toBe(2);
  await waitForMetricTo(relay.httpUrl, 'capsync_webhook_queue_depth', {}, (v) => v === 0, 'queue drained');
});

it('gives a delivery up once it is older than expireMs: removed, logged, counted as failed', async () => {
  const hooks = await receiver();
  hooks.answer = () => 503;
  const relay = await relayWith({ webhooks: { endpoints: [{ url: hooks.url, events: ['document.changed'] }], secret, retryBaseMs: 20, retryMaxMs: 50, expireMs: 300 } });
  const alice = await client(relay, 'doomed');
  await alice.waitForAck(alice.type('x'));
  await waitForMetric(relay.httpUrl, 'capsync_webhook_deliveries_total', { outcome: 'failed' }, 1);
  await waitForMetricTo(relay.httpUrl, 'capsync_webhook_queue_depth', {}, (v) => v === 0, 'queue empty');
  expect(hooks.received.length).toBeGreaterThanOrEqual(2);
  expect(new Set(hooks.received.map((r) => r.json.id)).size).toBe(1);
});

it('sends each endpoint only the events it asked for', async () => {
  const changesOnly = await receiver();
  const everything = await receiver();
  const relay = await relayWith({ webhooks: { endpoints: [{ url: changesOnly.url, events: ['document.changed'] }, everything.url], secret } });
  const alice = await client(relay, 'filtered');
  await alice.waitForAck(alice.type('x'));
  await changesOnly.waitFor(ofType('document.changed'), 'document.changed at the filtered endpoint');
  await everything.waitFor(ofType('document.changed'), 'document.changed at the other endpoint');
  expect(everything.received.some(ofType('connection.opened'))).toBe(true);
  expect(changesOnly.received.every(ofType('document.changed'))).toBe(true);
});

it('refuses events past maxQueued, counted; what was queued is still delivered', async () => {
  const hooks = await receiver();
  let open = false;
  hooks.answer = () => (open ? 200 : 503);
  const relay = await relayWith({ webhooks: { endpoints: [{ url: hooks.url, events: ['connection.opened'] }], secret, maxQueued: 2, retryBaseMs: 20, retryMaxMs: 50 } });
  for (const doc of ['q1', 'q2', 'q3', 'q4']) await client(relay, doc);
  await waitForMetric(relay.httpUrl, 'capsync_webhook_refused_total', { reason: 'queue-full' }, 2);
  open = true;
  await waitForMetric(relay.httpUrl, 'capsync_webhook_deliveries_total', { outcome: 'delivered' }, 2);
  expect(new Set(hooks.delivered('connection.opened').map((r) => r.json.data['docName'])).size).toBe(2);
});

it('never loses a queued delivery to a crash: a relay killed with SIGKILL delivers it after its restart', async () => {
  const hooks = await receiver();
  hooks.answer = () => 500; // down while the relay runs
  const data = tempDir('capsync-webhook-crash-');
  cleanups.push(() => data.remove());
  const args = ['--data', data.dir, '--auth-secret', authSecret, '--webhook', `document.created+document.changed@${hooks.url}`, '--webhook-secret', secret, '--webhook-timeout-ms', '500', '--webhook-retry-base-ms', '50', '--webhook-retry-max-ms', '100', '--change-debounce-ms', '20'];
  let relay: RelayProcess = await spawnRelay(args);
  cleanups.push(() => killRelay(relay));
  const docs = ['crash-a', 'crash-b', 'crash-c'];
  for (const doc of docs) {
    const c = await connectAs(`${relay.url}/${doc}`, authSecret, 'alice');
    await c.waitForAck(c.type(doc));
    await c.close();
  }
  // Every document's events were queued (the endpoint saw an attempt of each document.changed;
  // those of document.created may wait behind the failing endpoint's probe) and none acknowledged.
  for (const doc of docs) await hooks.waitFor(ofType('document.changed', doc), `an attempt for ${doc}`);
  const attempted = new Set(hooks.received.map((r) => r.json.id));
  await killRelay(relay, 'SIGKILL');

  hooks.answer = () => 200;
  relay = await spawnRelay(args);
  await waitForMetric(relay.httpUrl, 'capsync_webhook_deliveries_total', { outcome: 'delivered' }, 6, 20_000);
  const delivered = hooks.delivered();
  const ids = new Set(delivered.map((r) => r.json.id));
  expect(ids.size).toBe(6); // a created and a changed per document, each once
  for (const id of attempted) expect(ids.has(id)).toBe(true);
  for (const doc of docs) for (const type of ['document.created', 'document.changed']) expect(delivered.filter(ofType(type, doc)).length).toBeGreaterThan(0);
  await waitForMetricTo(relay.httpUrl, 'capsync_webhook_queue_depth', {}, (v) => v === 0, 'queue drained');
});

it('reports a change acknowledged just before a crash: its document.created and document.changed were queued at the first change, and are sent after the restart', async () => {
  const hooks = await receiver();
  const data = tempDir('capsync-webhook-window-');
  cleanups.push(() => data.remove());
  // onChange would come 2 s after the edit: the relay dies well before.
  const args = ['--data', data.dir, '--auth-secret', authSecret, '--webhook', `document.created+document.changed@${hooks.url}`, '--webhook-secret', secret, '--webhook-timeout-ms', '1000', '--change-debounce-ms', '2000', '--change-max-wait-ms', '2000'];
  let relay: RelayProcess = await spawnRelay(args);
  cleanups.push(() => killRelay(relay));
  const c = await connectAs(`${relay.url}/window`, authSecret, 'alice');
  await c.waitForAck(c.type('acknowledged, then the relay died'));
  await killRelay(relay, 'SIGKILL');
  await c.close();
  // document.created is due at once: it may have gone out (or been cut short, tried again once its
  // claim lapses: hence the short timeout). document.changed waited for onChange.
  expect(hooks.received.filter(ofType('document.changed'))).toHaveLength(0);

  relay = await spawnRelay(args);
  const changed = await hooks.waitFor(ofType('document.changed', 'window'), 'document.changed after the restart', 20_000);
  await hooks.waitFor(ofType('document.created', 'window'), 'document.created after the restart', 20_000);
  // Built by the relay that died (its address): behind a load balancer, set --webhook-document-base-url.
  expect(changed.json.data['documentUrl']).toMatch(/\/v1\/docs\/window$/);
  const doc = (await (await fetch(`${relay.httpUrl}/v1/docs/window`, { headers: { authorization: `Bearer ${await mintToken(authSecret, { sub: 'reader' })}` } })).json()) as { t: string };
  expect(doc.t).toBe('acknowledged, then the relay died');
});
