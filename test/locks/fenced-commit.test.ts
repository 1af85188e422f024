/**
 * A fenced write is published only once it is committed: held input and broadcasts until
 * the relay's store acknowledged it. Otherwise a relay crash in between would leave replicas
 * holding a relay-authored value the restarted relay does not have, which it would then
 * refuse as a write into the fenced area, cutting those replicas off for good.
 */
import WebSocket from 'ws';
import { afterAll, expect, it } from 'vitest';
import { createClient, type CapsyncClient, type WebSocketConstructor } from '@capsync/client';
import { MemoryDocStore } from '@capsync/core';
import { createRelay, type RelayHandle } from '@capsync/server';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { GatedAppendStore } from '../support/gated-store.js';

const clients: CapsyncClient[] = [];
const relays: RelayHandle[] = [];
const client = (url: string) => {
  const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS });
  clients.push(c);
  return c;
};
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(relays.map((r) => r.close()));
});

it('nobody sees a fenced value before it is committed', async () => {
  const gated = new GatedAppendStore(new MemoryDocStore());
  const relay = await createRelay({ port: 0, storage: gated });
  relays.push(relay);
  const a = client(relay.url);
  const b = client(relay.url);
  const ha = await a.open('d');
  const hb = await b.open('d');
  await hb.whenSynced({ timeoutMs: 5_000 });
  const lease = await a.locks.acquire('x', { ttlMs: 10_000 });
  await ha.cp.set('x', 1, lease);

  const { metrics } = relay.relay;
  const count = async (metric: typeof metrics.messagesOut, type: string): Promise<number> =>
    (await metric.get()).values.find((v) => v.labels['type'] === type)?.value ?? 0;
  const bytesIn = async (): Promise<number> => (await metrics.bytesIn.get()).values[0]?.value ?? 0;
  const doc = await relay.relay.registry.peek('d')!;
  /** Yields turns until `check` holds, or fails with `what` (no fixed sleeps). */
  const until = async (check: () => boolean | Promise<boolean>, what: string): Promise<void> => {
    const deadline = performance.now() + 2_000;
    while (!(await check())) {
      if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const updatesOut = await count(metrics.messagesOut, 'update');
  const step2Out = await count(metrics.messagesOut, 'sync-step-2');

  gated.hold();
  const pending = ha.cp.set('x', 2, lease);
  await until(() => doc.paused, 'the fenced write is waiting for its commit (input held)');
  // While the commit is held, B asks for the relay's state: once the relay has received the
  // request, nothing about the write may have gone out, neither broadcast nor reply.
  const before = await bytesIn();
  const syncing = hb.whenSynced({ timeoutMs: 5_000 });
  await until(async () => (await bytesIn()) > before, "the relay received B's sync request");
  await new Promise((resolve) => setImmediate(resolve));
  expect(await count(metrics.messagesOut, 'update')).toBe(updatesOut);
  expect(await count(metrics.messagesOut, 'sync-step-2')).toBe(step2Out);
  expect(hb.cp.get('x')).toBe(1);
  gated.release();
  await pending;
  await syncing;
  await hb.whenSynced({ timeoutMs: 5_000 });
  expect(hb.cp.get('x')).toBe(2);
  expect(ha.cp.get('x')).toBe(2);
});
