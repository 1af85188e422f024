import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { SqliteDocStore } from '@capsync/server';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, tempDir } from '../support/relay-fixture.js';

const MAX_UPDATES = 50;

async function storedLog(dir: string, doc: string) {
  const store = new SqliteDocStore(path.join(dir, 'capsync.db'));
  try {
    const stored = await store.load(doc);
    const bytes = stored.updates.reduce((n, u) => n + u.byteLength, 0);
    return { ...stored, bytes };
  } finally {
    await store.close();
  }
}

describe('stored size stays bounded through a long editing session', () => {
  const tmp = tempDir();
  afterEach(() => tmp.remove());

  it('merges the log into a snapshot past the threshold, in the background and on load', async () => {
    let relay = await startRelay({ dataDir: tmp.dir, compaction: { maxUpdates: MAX_UPDATES } });
    const c = await ProtocolClient.synced(relay.docUrl('long'));
    const text = c.doc.getText('t');
    // 3,000 keystrokes with deletions, one update each, as an editor would send them.
    for (let i = 0; i < 3000; i++) {
      if (i % 7 === 6) text.delete(Math.floor(text.length / 2), 1);
      else text.insert(Math.floor((text.length * (i % 5)) / 5), String.fromCharCode(97 + (i % 26)));
    }
    await c.waitForAck(c.seq, 30_000);
    const expected = text.toString();
    await c.close();
    await relay.close();

    const afterSession = await storedLog(tmp.dir, 'long');
    const minimal = Y.encodeStateAsUpdate(c.doc).byteLength;
    // Never more than a threshold's worth of log behind the snapshot.
    expect(afterSession.logCount).toBeLessThanOrEqual(MAX_UPDATES);
    expect(afterSession.bytes).toBeLessThan(minimal * 2 + MAX_UPDATES * 64);

    relay = await startRelay({ dataDir: tmp.dir, compaction: { maxUpdates: MAX_UPDATES } });
    const reader = await ProtocolClient.synced(relay.docUrl('long'));
    expect(reader.text).toBe(expected);
    await reader.close();
    await relay.close();
    const afterLoad = await storedLog(tmp.dir, 'long');
    expect(afterLoad.logCount).toBe(0);
    expect(afterLoad.updates.length).toBe(1);
  });
});
