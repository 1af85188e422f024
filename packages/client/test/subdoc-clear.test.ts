import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { createClient } from '../src/client.js';
import { IndexedDbStorage } from '../src/storage/indexeddb-storage.js';
import { MemoryStorage } from '../src/storage/memory-storage.js';
import type { StorageAdapter } from '../src/storage/storage-adapter.js';
import { subdocReplicaName } from '../src/sync/subdocs.js';

/**
 * clearLocalData(name) promises to delete the local replica of `name`: a document's
 * subdocuments (issue 12 P6) are kept in replicas of their own (subdocReplicaName), and
 * must go with it — else "clear this document" leaves its subdocuments' content on the device.
 */
async function storedBytes(storage: StorageAdapter, name: string): Promise<number> {
  const store = await storage.open(name);
  const { updates, outbox } = await store.load();
  store.close();
  return updates.length + outbox.length;
}

for (const [kind, make] of [
  ['memory', () => new MemoryStorage()],
  ['indexeddb', () => new IndexedDbStorage({ factory: new IDBFactory() as unknown as globalThis.IDBFactory })],
] as const) {
  describe(`clearLocalData with subdocuments (${kind})`, () => {
    it('clearLocalData(parent) deletes the replicas of its subdocuments too', async () => {
      const storage: StorageAdapter = make();
      const client = createClient({ url: 'ws://127.0.0.1:9', storage, crossTab: false, connect: false, WebSocket: WebSocket as never });
      const notebook = await client.open('notebook');
      notebook.doc.getMap<Y.Doc>('pages').set('p1', new Y.Doc({ guid: 'page-1' }));
      const page = await notebook.subdocs.get('page-1');
      page.doc.getText('t').insert(0, 'secret page content');
      await client.close();
      expect(await storedBytes(storage, subdocReplicaName('notebook', 'page-1'))).toBeGreaterThan(0);

      const again = createClient({ url: 'ws://127.0.0.1:9', storage, crossTab: false, connect: false, WebSocket: WebSocket as never });
      await again.clearLocalData('notebook');
      expect(await storedBytes(storage, 'notebook')).toBe(0);
      expect(await storedBytes(storage, subdocReplicaName('notebook', 'page-1'))).toBe(0);
      await again.close();
    });
  });
}
