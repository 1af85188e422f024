import { EventEmitter } from 'node:events';
import { RelayDoc, type RelayDocDeps } from './relay-doc.js';

export interface DocRegistryEvents {
  loaded: [name: string];
  unloaded: [name: string];
}

interface Entry {
  doc: Promise<RelayDoc>;
  refs: number;
  idleTimer: NodeJS.Timeout | null;
}

/**
 * Loads each document once, shares it between its users, and unloads it after
 * `idleTimeoutMs` without users, once its pending writes committed. A document is only handed
 * out after it finished loading, and a document being unloaded is reloaded only after its
 * writes are committed, so a fresh load never misses an update.
 */
export class DocRegistry extends EventEmitter<DocRegistryEvents> {
  private readonly entries = new Map<string, Entry>();
  private readonly unloading = new Map<string, Promise<void>>();

  constructor(
    private readonly deps: RelayDocDeps,
    private readonly idleTimeoutMs: number,
  ) {
    super();
  }

  /** Number of documents loaded (or loading). */
  get size(): number {
    return this.entries.size;
  }

  /** The loaded document, if it is loaded; never starts a load. */
  /** How many holders (acquires not yet released) the document has; 0 when it is not loaded. */
  holders(name: string): number {
    return this.entries.get(name)?.refs ?? 0;
  }

  peek(name: string): Promise<RelayDoc> | undefined {
    return this.entries.get(name)?.doc;
  }

  /** Loads (or shares) a document and holds it until `release`. Rejects if loading failed. */
  async acquire(name: string): Promise<RelayDoc> {
    for (let pending = this.unloading.get(name); pending; pending = this.unloading.get(name)) await pending;
    let entry = this.entries.get(name);
    if (!entry) {
      const doc = RelayDoc.load(name, this.deps);
      entry = { doc, refs: 0, idleTimer: null };
      this.entries.set(name, entry);
      this.deps.metrics.docsLoaded.set(this.entries.size);
      doc.then(
        () => this.emit('loaded', name),
        () => {
          if (this.entries.get(name) === entry) this.entries.delete(name);
          this.deps.metrics.docsLoaded.set(this.entries.size);
        },
      );
    }
    entry.refs++;
    if (entry.idleTimer) {
      clearTimeout(entry.idleTimer);
      entry.idleTimer = null;
    }
    try {
      return await entry.doc;
    } catch (err) {
      entry.refs--;
      throw err;
    }
  }

  /** Gives back a document taken with `acquire`. */
  release(name: string): void {
    const entry = this.entries.get(name);
    if (!entry) return;
    entry.refs--;
    if (entry.refs > 0) return;
    entry.idleTimer = setTimeout(() => void this.unload(name, entry), this.idleTimeoutMs);
    entry.idleTimer.unref();
  }

  private async unload(name: string, entry: Entry): Promise<void> {
    if (this.entries.get(name) !== entry || entry.refs > 0) return;
    this.entries.delete(name);
    this.deps.metrics.docsLoaded.set(this.entries.size);
    const done = (async () => {
      const doc = await entry.doc;
      await doc.whenPersisted();
      doc.destroy();
    })();
    this.unloading.set(name, done);
    try {
      await done;
      this.deps.metrics.docUnloads.inc();
    } catch (err) {
      this.deps.logger.error({ err, doc: name }, 'unloading failed');
    } finally {
      this.unloading.delete(name);
      this.emit('unloaded', name);
    }
  }

  /** Waits for every loaded document's writes to commit and unloads them all. */
  async closeAll(): Promise<void> {
    const entries = Array.from(this.entries.entries());
    for (const [, entry] of entries) if (entry.idleTimer) clearTimeout(entry.idleTimer);
    this.entries.clear();
    this.deps.metrics.docsLoaded.set(0);
    await Promise.allSettled([
      ...this.unloading.values(),
      ...entries.map(async ([, entry]) => {
        const doc = await entry.doc;
        // Closing does not wait for storage to come back: what waits for it was never acknowledged.
        doc.stopStorageRetries();
        await doc.whenPersisted();
        doc.destroy();
      }),
    ]);
  }
}
