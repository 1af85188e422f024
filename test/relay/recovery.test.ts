import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '@capsync/core';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';

describe('an update that decodes but fails to integrate', () => {
  let relay: TestRelay;
  afterEach(async () => relay.dispose());

  it('closes its sender with InvalidUpdate, reloads the document from storage, and keeps the others served', async () => {
    relay = await startRelay();
    const sender = await ProtocolClient.synced(relay.docUrl('doc'));
    const bystander = await ProtocolClient.synced(relay.docUrl('doc'));
    sender.type('kept');
    await sender.waitForAck(sender.seq);
    await bystander.waitForText('kept');

    // Make integration fail half-way: Yjs rethrows observer errors out of applyUpdate after
    // the update was already integrated, the worst case (the in-memory doc holds part of it).
    const relayDoc = await relay.relay.registry.peek('doc')!;
    relayDoc.doc.getText('t').observe((event) => {
      if (event.target.toString().includes('poison')) throw new Error('integration failure');
    });
    sender.type('poison');
    const closed = await sender.waitClosed();
    expect(closed.code).toBe(CloseCode.InvalidUpdate);
    expect(closed.reason).toMatch(/^invalid-update: /);

    bystander.type(' more');
    await bystander.waitForAck(bystander.seq);
    const fresh = await ProtocolClient.synced(relay.docUrl('doc'));
    expect(fresh.text).toBe('kept more');
    expect(bystander.text).toBe('kept more');
    expect(bystander.closeInfo).toBeNull();
    await Promise.all([bystander.close(), fresh.close()]);
  });
});
