import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { waitForEvent } from '../support/wait.js';

const DOCS = 2000;
const CONCURRENCY = 16;

describe('idle documents are unloaded', () => {
  let relay: TestRelay;
  afterEach(async () => relay.dispose());

  it(`keeps memory bounded when ${DOCS} documents are each touched once`, async () => {
    relay = await startRelay({ idleTimeoutMs: 0 });
    const registry = relay.relay.registry;
    let peak = 0;
    registry.on('loaded', () => (peak = Math.max(peak, registry.size)));

    let next = 0;
    const worker = async () => {
      while (next < DOCS) {
        const i = next++;
        const doc = new Y.Doc();
        doc.getText('t').insert(0, `content of doc ${i}`);
        const res = await fetch(`${relay.httpUrl}/v1/docs/touch-${i}/update`, {
          method: 'POST',
          body: Buffer.from(Y.encodeStateAsUpdate(doc)),
        });
        expect(res.status).toBe(200);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await waitForEvent(registry, 'unloaded', () => registry.size === 0 || undefined, 'all documents unloaded');

    // Never more loaded at once than the requests in flight (plus ones mid-unload).
    expect(peak).toBeLessThanOrEqual(CONCURRENCY * 2);
    const metrics = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^capsync_docs_loaded 0$/m);
    // Unloading lost nothing: documents load back with their content.
    for (const i of [0, 777, DOCS - 1]) {
      const json = (await (await fetch(`${relay.httpUrl}/v1/docs/touch-${i}`)).json()) as { t: string };
      expect(json.t).toBe(`content of doc ${i}`);
    }
  });

  it('keeps a document loaded while a client is connected, and unloads it after', async () => {
    relay = await startRelay({ idleTimeoutMs: 50 });
    const { ProtocolClient } = await import('../support/protocol-client.js');
    const c = await ProtocolClient.synced(relay.docUrl('held'));
    c.type('x');
    await c.waitForAck(c.seq);
    expect(relay.relay.registry.size).toBe(1);
    await c.close();
    await waitForEvent(relay.relay.registry, 'unloaded', () => relay.relay.registry.size === 0 || undefined, 'unload after close');
  });
});
