/**
 * Webhooks in a cluster on PostgreSQL (issue 14): the relays share one delivery queue in the
 * database. Events of both relays are delivered once each while both run (claims split the
 * queue), and what a relay killed with SIGKILL had queued is delivered by the relay that is left.
 */
import { afterEach, expect, it } from 'vitest';
import { connectAs } from '../support/client-ids.js';
import { describePostgres } from '../support/describe-postgres.js';
import { tempDir } from '../support/relay-fixture.js';
import { waitForMetricTo } from '../support/relay-observe.js';
import { killRelay, spawnRelay, type RelayProcess } from '../support/relay-process.js';
import { WebhookReceiver, type ReceivedWebhook } from '../support/webhook-receiver.js';

const secret = 'cluster-webhook-secret-0123456789';
const authSecret = 'cluster-webhook-auth-0123456789';
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function relayOn(url: string, hooks: WebhookReceiver): Promise<RelayProcess> {
  const data = tempDir('capsync-cluster-webhooks-');
  const relay = await spawnRelay([
    '--postgres', url, '--data', data.dir, '--auth-secret', authSecret,
    '--webhook', `document.changed@${hooks.url}`, '--webhook-secret', secret,
    '--webhook-timeout-ms', '500', '--webhook-retry-base-ms', '50', '--webhook-retry-max-ms', '100', '--change-debounce-ms', '20',
  ]);
  cleanups.push(() => data.remove(), () => killRelay(relay));
  return relay;
}

async function edit(relay: RelayProcess, doc: string): Promise<void> {
  const c = await connectAs(`${relay.url}/${doc}`, authSecret, 'alice');
  await c.waitForAck(c.type(doc));
  await c.close();
}

const changed = (doc: string) => (r: ReceivedWebhook) => r.json.type === 'document.changed' && r.json.data['docName'] === doc;

describePostgres('webhooks of a cluster on PostgreSQL', (server) => {
  it('one queue for every relay: each event delivered once; a killed relay’s deliveries sent by the other', async () => {
    const url = await server().createDatabase();
    const hooks = await WebhookReceiver.start();
    cleanups.push(() => hooks.close());
    const a = await relayOn(url, hooks);
    const b = await relayOn(url, hooks);

    await edit(a, 'on-a');
    await edit(b, 'on-b');
    await hooks.waitFor(changed('on-a'), 'on-a delivered');
    await hooks.waitFor(changed('on-b'), 'on-b delivered');
    await waitForMetricTo(a.httpUrl, 'capsync_webhook_queue_depth', {}, (v) => v === 0, 'queue drained');
    // Both relays claim from one queue: nothing went out twice.
    expect(hooks.received.length).toBe(new Set(hooks.received.map((r) => r.json.id)).size);

    // The endpoint fails; relay A queues an event and dies; B delivers it once the endpoint is back.
    hooks.answer = () => 500;
    await edit(a, 'orphan');
    const attempt = await hooks.waitFor(changed('orphan'), 'an attempt for orphan');
    await killRelay(a, 'SIGKILL');
    hooks.answer = () => 200;
    const delivered = await hooks.waitFor((r) => changed('orphan')(r) && r.answered === 200, 'orphan delivered by relay B', 20_000);
    expect(delivered.json.id).toBe(attempt.json.id);
    expect(delivered.json.relayId).toBe(attempt.json.relayId); // A's event, sent by B
  });
});
