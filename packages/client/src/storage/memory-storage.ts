import { isSubdocReplicaOf, logSize, type OutboxRecord, type ReplicaStore, type ReplicaWrite, type StorageAdapter, type StoredUpdate } from './storage-adapter.js';

interface MemoryReplica {
  log: StoredUpdate[];
  outbox: Map<string, OutboxRecord>;
}

/**
 * Replicas kept in memory: they survive closing and reopening a document within one
 * client (one adapter), not a reload. For tests, server-side use, and the fallback when
 * IndexedDB is unusable.
 */
export class MemoryStorage implements StorageAdapter {
  readonly kind = 'memory';
  readonly persistent = false;
  private readonly replicas = new Map<string, MemoryReplica>();

  async open(docName: string): Promise<ReplicaStore> {
    let replica = this.replicas.get(docName);
    if (!replica) {
      replica = { log: [], outbox: new Map() };
      this.replicas.set(docName, replica);
    }
    return new MemoryReplicaStore(replica);
  }

  async clear(docName?: string): Promise<void> {
    if (docName === undefined) this.replicas.clear();
    else for (const name of Array.from(this.replicas.keys())) if (name === docName || isSubdocReplicaOf(name, docName)) this.replicas.delete(name);
  }
}

class MemoryReplicaStore implements ReplicaStore {
  constructor(private readonly replica: MemoryReplica) {}

  async load(): Promise<{ updates: StoredUpdate[]; outbox: OutboxRecord[] }> {
    return { updates: [...this.replica.log], outbox: Array.from(this.replica.outbox.values(), (r) => ({ ...r })) };
  }

  async write(batch: ReplicaWrite): Promise<void> {
    this.replica.log.push(...batch.updates);
    for (const r of batch.putOutbox) this.replica.outbox.set(r.key, { ...r });
    for (const key of batch.deleteOutbox) this.replica.outbox.delete(key);
  }

  async compact(merge: (log: StoredUpdate[]) => StoredUpdate | null) {
    const before = logSize(this.replica.log);
    const merged = merge([...this.replica.log]);
    if (merged) this.replica.log = [merged];
    return { before, after: logSize(this.replica.log) };
  }

  async size() {
    return logSize(this.replica.log);
  }

  close(): void {}
}
