import { EventEmitter } from 'node:events';
import { RelayDoc, type RelayDocDeps } from './relay-doc.js';

export interface DocRegistryEvents {
  loaded: [name: string];
  unloaded: [name: string];
}

interface Entry {
  doc: Promise<RelayDoc>;
  /** The document once loaded. */
  loaded: RelayDoc | null;
  refs: number;
  idleTimer: NodeJS.Timeout | null;
  /** Taken out of the registry by a delete (put back if the store fails it). */
  deleting: boolean;
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
  /** The entry of each loaded copy: a release counts against the copy acquired, not the name. */
  private readonly entryOf = new WeakMap<RelayDoc, Entry>();
  private readonly deps: RelayDocDeps;

  constructor(deps: RelayDocDeps, private readonly idleTimeoutMs: number) {
    super();
    // A document that finds it was deleted elsewhere (another cluster relay) is dropped here.
    this.deps = { ...deps, deleted: (doc, incarnation) => this.dropDeleted(doc, incarnation) };
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
      const created: Entry = (entry = { doc, loaded: null, refs: 0, idleTimer: null, deleting: false });
      this.entries.set(name, entry);
      this.deps.metrics.docsLoaded.set(this.entries.size);
      doc.then(
        (loaded) => {
          created.loaded = loaded;
          this.entryOf.set(loaded, created);
          this.emit('loaded', name);
        },
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

  /**
   * Gives back `doc`, taken with `acquire(name)`. Tied to the copy acquired: if that copy is no
   * longer the name's entry (deleted, dropped), this does nothing, so a holder across a delete
   * never releases the new incarnation's copy.
   */
  release(name: string, doc: RelayDoc): void {
    const entry = this.entryOf.get(doc);
    if (!entry) return;
    entry.refs--;
    if (this.entries.get(name) === entry) this.idleIfUnheld(name, entry);
  }

  /**
   * Whether `doc`, just acquired, is a copy a delete took out of the registry (or already
   * deleted): its holder gives it back and acquires the name again, which waits for the delete
   * and loads the new incarnation (or gets this copy back if the store failed the delete).
   */
  superseded(doc: RelayDoc): boolean {
    return doc.deleted || this.entryOf.get(doc)?.deleting === true;
  }

  /** Starts the idle timer of an entry nobody holds. */
  private idleIfUnheld(name: string, entry: Entry): void {
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

  /**
   * Deletes document `name` (DocStore.delete, through `remove`) and resolves with its new
   * incarnation. Acquires of the name wait until it is done, so nobody gets the old copy after
   * the delete, nor a new copy loaded before it. The loaded copy, if any, is taken out of the
   * registry first and dropped once the store committed the delete: its sessions are closed
   * with 'document-deleted' (RelayDoc.closeDeleted). Its appends made meanwhile carry the old
   * incarnation, so the store refuses the ones it orders after the delete. If the store fails,
   * the copy is put back as it was and the error is thrown (nothing was deleted).
   */
  async delete(name: string, remove: () => Promise<number>): Promise<number> {
    for (let pending = this.unloading.get(name); pending; pending = this.unloading.get(name)) await pending;
    const entry = this.entries.get(name);
    if (entry) {
      if (entry.idleTimer) clearTimeout(entry.idleTimer);
      entry.idleTimer = null;
      entry.deleting = true;
      this.entries.delete(name);
      this.deps.metrics.docsLoaded.set(this.entries.size);
    }
    const run = (async () => {
      let incarnation: number;
      try {
        incarnation = await remove();
      } catch (err) {
        if (entry) {
          entry.deleting = false;
          this.entries.set(name, entry);
          this.deps.metrics.docsLoaded.set(this.entries.size);
          this.idleIfUnheld(name, entry);
        }
        throw err;
      }
      const doc = entry ? await entry.doc.catch(() => null) : null;
      doc?.closeDeleted(incarnation);
      return incarnation;
    })();
    this.unloading.set(name, run.then(() => {}, () => {}));
    try {
      return await run;
    } finally {
      this.unloading.delete(name);
      if (entry) this.emit('unloaded', name);
    }
  }

  /** A loaded document found it was deleted elsewhere (RelayDocDeps.deleted): it leaves the registry, its sessions are closed. */
  private dropDeleted(doc: RelayDoc, incarnation?: number): void {
    const entry = this.entries.get(doc.name);
    const ours = entry?.loaded === doc;
    if (ours) {
      if (entry.idleTimer) clearTimeout(entry.idleTimer);
      this.entries.delete(doc.name);
      this.deps.metrics.docsLoaded.set(this.entries.size);
    }
    doc.closeDeleted(incarnation);
    if (ours) this.emit('unloaded', doc.name);
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
