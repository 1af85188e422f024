import type { AppendResult, ClientClaimConflict, DocStore, StoredDoc } from './doc-store.js';
import { DocumentDeletedError, StorageError } from '../errors.js';

interface MemoryDoc {
  snapshot: { data: Uint8Array; through: number } | null;
  log: { position: number; data: Uint8Array }[];
  logBytes: number;
}

/**
 * A `DocStore` in process memory: for tests, ephemeral relays and browsers without
 * IndexedDB. "Durable" here means "stored in this process": it does not survive a restart.
 * Stores copies, so callers may reuse their buffers.
 */
export class MemoryDocStore implements DocStore {
  private readonly docs = new Map<string, MemoryDoc>();
  /** Client id owners per document (kept apart from `docs`: a document may own ids before its first append). */
  private readonly owners = new Map<string, Map<number, string>>();
  /** Incarnations of deleted names (absent: 0). */
  private readonly incarnations = new Map<string, number>();
  private nextPosition = 1;
  private closed = false;

  async load(name: string): Promise<StoredDoc> {
    this.assertOpen();
    const doc = this.docs.get(name);
    const incarnation = this.incarnations.get(name) ?? 0;
    if (!doc) return { updates: [], head: 0, logCount: 0, logBytes: 0, incarnation };
    const updates = doc.snapshot ? [doc.snapshot.data.slice()] : [];
    for (const entry of doc.log) updates.push(entry.data.slice());
    const head = doc.log.at(-1)?.position ?? doc.snapshot?.through ?? 0;
    return { updates, head, logCount: doc.log.length, logBytes: doc.logBytes, incarnation };
  }

  async append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult> {
    this.assertOpen();
    const current = this.incarnations.get(name) ?? 0;
    if (incarnation !== undefined && incarnation !== current) throw new DocumentDeletedError(`document "${name}" was deleted (incarnation ${current}, the append's ${incarnation})`);
    let doc = this.docs.get(name);
    if (!doc) this.docs.set(name, (doc = { snapshot: null, log: [], logBytes: 0 }));
    const position = this.nextPosition++;
    doc.log.push({ position, data: update.slice() });
    doc.logBytes += update.byteLength;
    return { position, logCount: doc.log.length, logBytes: doc.logBytes };
  }

  async compact(name: string, snapshot: Uint8Array, through: number, incarnation?: number): Promise<void> {
    this.assertOpen();
    if (incarnation !== undefined && incarnation !== (this.incarnations.get(name) ?? 0)) return;
    let doc = this.docs.get(name);
    if (!doc) this.docs.set(name, (doc = { snapshot: null, log: [], logBytes: 0 }));
    if (doc.snapshot && through <= doc.snapshot.through) return;
    doc.snapshot = { data: snapshot.slice(), through };
    doc.log = doc.log.filter((e) => e.position > through);
    doc.logBytes = doc.log.reduce((n, e) => n + e.data.byteLength, 0);
  }

  async claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    this.assertOpen();
    let owners = this.owners.get(name);
    if (!owners) this.owners.set(name, (owners = new Map()));
    const conflicts: ClientClaimConflict[] = [];
    for (const clientId of clientIds) {
      const current = owners.get(clientId);
      if (current === undefined) owners.set(clientId, owner);
      else if (current !== owner) conflicts.push({ clientId, owner: current });
    }
    return conflicts;
  }

  async loadClientOwners(name: string): Promise<[number, string][]> {
    this.assertOpen();
    return Array.from(this.owners.get(name) ?? []);
  }

  async delete(name: string): Promise<number> {
    this.assertOpen();
    this.docs.delete(name);
    this.owners.delete(name);
    const incarnation = (this.incarnations.get(name) ?? 0) + 1;
    this.incarnations.set(name, incarnation);
    return incarnation;
  }

  async list(): Promise<string[]> {
    this.assertOpen();
    return Array.from(this.docs.keys());
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('memory store is closed');
  }
}
