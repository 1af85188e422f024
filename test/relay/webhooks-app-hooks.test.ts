/**
 * Webhooks and the app's own hooks (from a hostile review of issue 14): webhook events were made
 * by the same hook calls as the app's, so an app hook that hangs (a backend outage, a fetch
 * without a timeout) held them: past the in-flight bound of hook calls they were dropped (lost),
 * and on its document the next ones waited for it for good. Now the webhooks have hooks of
 * their own, with their own budget and their own one-call-per-document.
 */
import { afterEach, expect, it } from 'vitest';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { metricValue, waitForMetricTo } from '../support/relay-observe.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function patch(relay: TestRelay, doc: string, text: string): Promise<void> {
  const res = await fetch(`${relay.httpUrl}/v1/docs/${doc}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ edits: [{ text: 't', append: text }] }),
  });
  if (res.status >= 300) throw new Error(`PATCH ${doc}: ${res.status} ${await res.text()}`);
}

it('an app hook hanging on more documents than its in-flight bound does not cost the webhooks of the next document', async () => {
  const hooks = await WebhookReceiver.start();
  cleanups.push(() => hooks.close());
  const relay = await startRelay({
    changeDebounceMs: 10,
    hookTimeoutMs: 100,
    webhooks: { endpoints: [hooks.url], secret: 'review-secret-0123456789', document: 'none' },
    // The app's own onChange: its backend is down and the call never settles.
    hooks: { onChange: () => new Promise<void>(() => {}) },
    maxHookCallsInFlight: 20,
  });
  cleanups.push(() => relay.dispose());

  const names = Array.from({ length: 40 }, (_, i) => `doc-${i}`);
  for (let i = 0; i < names.length; i += 25) await Promise.all(names.slice(i, i + 25).map((n) => patch(relay, n, 'x')));
  await waitForMetricTo(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onChange', outcome: 'timeout' }, (v) => v >= 20, 'the app hook hung on its whole bound', 30_000);

  // The outage of the app's hook is the app's problem; the webhook of the next change is not.
  await patch(relay, 'after-the-outage', 'y');
  const got = await hooks
    .waitFor((r) => r.json.type === 'document.changed' && r.json.data['docName'] === 'after-the-outage', 'document.changed of the next document', 25_000)
    .catch(() => null);
  const dropped = await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onChangePending', outcome: 'dropped' });
  const droppedChange = await metricValue(relay.httpUrl, 'capsync_hook_calls_total', { hook: 'onChange', outcome: 'dropped' });
  expect(got, `document.changed never queued (onChangePending dropped ${dropped}, onChange dropped ${droppedChange})`).not.toBeNull();
}, 60_000);

it('an app onChange that never settles on one document does not silence the webhooks of that document for good', async () => {
  const hooks = await WebhookReceiver.start();
  cleanups.push(() => hooks.close());
  const relay = await startRelay({
    changeDebounceMs: 20,
    changeMaxWaitMs: 100, // a document.changed is held for 100 + 20 ms + 5 s
    hookTimeoutMs: 100,
    webhooks: { endpoints: [hooks.url], secret: 'review-secret-0123456789', document: 'none' },
    hooks: { onChange: () => new Promise<void>(() => {}) },
  });
  cleanups.push(() => relay.dispose());
  const changed = () => hooks.received.filter((r) => r.json.type === 'document.changed' && r.json.data['docName'] === 'x');

  await patch(relay, 'x', 'a');
  await hooks.waitFor((r) => r.json.type === 'document.changed', 'the first document.changed');
  await patch(relay, 'x', 'b'); // held at its first change; goes out at its due time (onChange never comes again)
  await hooks.waitFor(() => changed().length >= 2, 'the held document.changed of b', 10_000);
  await patch(relay, 'x', 'c'); // DocHooks waits for the hung composed call: no onChangePending, no onChange, ever
  const third = await hooks.waitFor(() => changed().length >= 3, 'a document.changed for c', 12_000).catch(() => null);
  expect(third, 'the change "c" was acknowledged and never reported').not.toBeNull();
}, 60_000);
