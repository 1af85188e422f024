import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { SqliteDocStore } from '@capsync/server';
import { GatedLoadStore } from '../support/gated-store.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, tempDir, type TestRelay } from '../support/relay-fixture.js';

function storedText(updates: Uint8Array[]): string {
  const doc = new Y.Doc();
  for (const u of updates) Y.applyUpdate(doc, u);
  return doc.getText('t').toString();
}

describe('a document is never served before it has finished loading', () => {
  const tmp = tempDir();
  let relay: TestRelay | undefined;
  afterEach(async () => {
    await relay?.dispose();
    tmp.remove();
  });

  it('queues an early client until the stored state is loaded, and never overwrites it', async () => {
    const file = path.join(tmp.dir, 'capsync.db');
    const seed = new SqliteDocStore(file);
    const writer = new Y.Doc();
    writer.getText('t').insert(0, 'stored before start');
    await seed.append('gated', Y.encodeStateAsUpdate(writer));
    await seed.close();

    const store = new GatedLoadStore(new SqliteDocStore(file));
    relay = await startRelay({ storage: store });
    const early = await ProtocolClient.connect(relay.docUrl('gated'));
    // The early client edits at once, on its blank replica.
    early.type('early edit');
    await store.loadStarted;
    // Nothing is served while loading: a round trip on another document proves the relay
    // processed our frames' arrival and is otherwise responsive.
    const other = await ProtocolClient.connect(relay.docUrl('other-doc'));
    expect(early.received).toEqual([]);
    expect(early.text).toBe('early edit');
    store.open();
    await other.waitSynced();
    await early.waitSynced();
    await early.waitFor(() => early.text.includes('stored before start') || undefined, 'stored content at the early client');
    await early.waitForAck(early.seq);

    const { updates } = await store.load('gated');
    const text = storedText(updates);
    expect(text).toContain('stored before start');
    expect(text).toContain('early edit');
    await early.close();
    await other.close();
  });
});
