import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { LocalStorageError } from '@capsync/core';
import { LocalReplica, MERGE_ROW_BYTES } from '../src/replica/local-replica.js';
import { MemoryStorage } from '../src/storage/memory-storage.js';
import type { ReplicaStore, ReplicaWrite, StorageAdapter } from '../src/storage/storage-adapter.js';

/** Memory storage that records every write and can be told to fail. */
class RecordingStorage implements StorageAdapter {
  readonly kind = 'recording';
  readonly persistent = true;
  readonly writes: ReplicaWrite[] = [];
  failWith: Error | null = null;
  failOpen = false;
  private readonly inner = new MemoryStorage();

  async open(docName: string): Promise<ReplicaStore> {
    if (this.failOpen) throw Object.assign(new Error('blocked'), { name: 'InvalidStateError' });
    const store = await this.inner.open(docName);
    return {
      load: () => store.load(),
      write: async (batch) => {
        if (this.failWith) throw this.failWith;
        this.writes.push(batch);
        return store.write(batch);
      },
      compact: (merge) => store.compact(merge),
      size: () => store.size(),
      close: () => store.close(),
    };
  }
  clear(docName?: string) {
    return this.inner.clear(docName);
  }
}

const options = { writeDelayMs: 5, compactAfterRows: 1000 };
const u = (n: number) => ({ data: new Uint8Array([n]), format: 'v1' as const });

describe('LocalReplica', () => {
  it('commits a burst of appends as one transaction', async () => {
    const storage = new RecordingStorage();
    const { replica } = await LocalReplica.open(storage, 'd', options, { onError: () => {} });
    const doc = new Y.Doc();
    doc.on('update', (update: Uint8Array) => replica.append({ data: update, format: 'v1' }));
    for (let i = 0; i < 50; i++) doc.getText('t').insert(i, 'x');
    await replica.commit();
    expect(storage.writes).toHaveLength(1);
    // ...merged into one row holding all 50 edits.
    expect(storage.writes[0]!.updates).toHaveLength(1);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, storage.writes[0]!.updates[0]!.data);
    expect(copy.getText('t').toString()).toBe('x'.repeat(50));
  });

  it('stores a row larger than MERGE_ROW_BYTES as it came and merges the small ones around it in order (no merge holds the event loop long)', async () => {
    const storage = new RecordingStorage();
    const { replica } = await LocalReplica.open(storage, 'd', options, { onError: () => {} });
    const doc = new Y.Doc();
    const appended: Uint8Array[] = [];
    doc.on('update', (update: Uint8Array) => {
      appended.push(update);
      replica.append({ data: update, format: 'v1' });
    });
    const text = doc.getText('t');
    for (let i = 0; i < 10; i++) text.insert(text.length, 'a');
    text.insert(text.length, 'b'.repeat(MERGE_ROW_BYTES + 1));
    for (let i = 0; i < 10; i++) text.insert(text.length, 'c');
    await replica.commit();
    const rows = storage.writes[0]!.updates;
    expect(rows).toHaveLength(3);
    expect(rows[1]!.data).toBe(appended[10]);
    const copy = new Y.Doc();
    for (const row of rows) Y.applyUpdate(copy, row.data);
    expect(copy.getText('t').toString()).toBe(text.toString());
  });

  it('commits on its own after the write delay', async () => {
    const storage = new RecordingStorage();
    let committed!: () => void;
    const done = new Promise<void>((resolve) => (committed = resolve));
    const { replica } = await LocalReplica.open(storage, 'd', options, { onError: () => {}, afterCommit: () => committed() });
    replica.append(u(1));
    await done;
    expect(storage.writes).toHaveLength(1);
  });

  it('falls back to memory with one typed error when a write fails, and rejects later commits with it', async () => {
    const storage = new RecordingStorage();
    const errors: LocalStorageError[] = [];
    const { replica } = await LocalReplica.open(storage, 'd', options, { onError: (e) => errors.push(e) });
    storage.failWith = Object.assign(new Error('full'), { name: 'QuotaExceededError' });
    replica.append(u(1));
    await expect(replica.commit()).rejects.toMatchObject({ code: 'quota-exceeded' });
    replica.append(u(2));
    await expect(replica.commit()).rejects.toBeInstanceOf(LocalStorageError);
    expect(errors.map((e) => e.code)).toEqual(['quota-exceeded']);
    expect(replica.saving).toBe(false);
  });

  it('opens empty and in memory, with an error, when the storage cannot open', async () => {
    const storage = new RecordingStorage();
    storage.failOpen = true;
    const errors: LocalStorageError[] = [];
    const { replica, updates } = await LocalReplica.open(storage, 'd', options, { onError: (e) => errors.push(e) });
    expect(updates).toEqual([]);
    expect(errors[0]?.code).toBe('local-storage-unavailable');
    replica.append(u(1));
    expect(replica.saving).toBe(false);
  });
});
