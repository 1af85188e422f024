import * as Y from 'yjs';
import { RemoteOrigin } from '../relay/origins.js';
import type { HookRunner } from './hook-runner.js';

/** How often a document's `onChange` is called (see RelayHooks.onChange). */
export interface ChangeTiming {
  debounceMs: number;
  maxWaitMs: number;
}

export const DEFAULT_CHANGE_TIMING: ChangeTiming = { debounceMs: 1_000, maxWaitMs: 10_000 };

/**
 * The per-document side of the hooks: `onChange` debounced over the document's changes made
 * through this relay, `onStoreDocument` coalesced over its commits. One call of each in flight;
 * what comes meanwhile waits for the next (merged), so a slow hook costs one merged update per
 * document, not a queue.
 */
export class DocHooks {
  private changes: Uint8Array[] = [];
  private firstChangeAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private changeRunning = false;
  private stored = 0;
  private storeRunning = false;
  private stopped = false;

  constructor(
    private readonly name: string,
    private readonly runner: HookRunner,
    private readonly timing: ChangeTiming,
    /** The document's current state (for `document()`). */
    private readonly state: () => Uint8Array,
  ) {}

  /** Follows `doc`'s changes (again after a reload). */
  watch(doc: Y.Doc): void {
    if (this.runner.has('onChange')) doc.on('update', this.onUpdate);
  }

  unwatch(doc: Y.Doc): void {
    doc.off('update', this.onUpdate);
  }

  /** This relay committed the document through `position`. */
  committed(position: number): void {
    if (this.stopped || !this.runner.has('onStoreDocument')) return;
    this.stored = Math.max(this.stored, position);
    if (!this.storeRunning) void this.callStore();
  }

  /** The document unloads: what changed is reported now, nothing after. */
  stop(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.changes.length > 0 && !this.changeRunning) void this.callChange();
    this.stopped = true;
  }

  private readonly onUpdate = (update: Uint8Array, origin: unknown): void => {
    if (this.stopped || !madeHere(origin)) return;
    if (this.changes.length === 0) {
      this.firstChangeAt = Date.now();
      void this.runner.run('onChangePending', { docName: this.name });
    }
    this.changes.push(update);
    // Merged as it goes, 64 at a time (the newest 64 into one), so what waits stays about the size
    // of what changed, and a long wait (a slow hook) costs no re-merge of everything per update.
    if (this.changes.length >= 128) this.changes.push(Y.mergeUpdates(this.changes.splice(-64, 64)));
    this.schedule();
  };

  private schedule(): void {
    if (this.changeRunning) return; // called again when the running call ends
    if (this.timer) clearTimeout(this.timer);
    const waited = Date.now() - this.firstChangeAt;
    const delay = Math.max(0, Math.min(this.timing.debounceMs, this.timing.maxWaitMs - waited));
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.callChange();
    }, delay);
    this.timer.unref();
  }

  private async callChange(): Promise<void> {
    if (this.changes.length === 0) return;
    const update = this.changes.length === 1 ? this.changes[0]! : Y.mergeUpdates(this.changes);
    this.changes = [];
    this.changeRunning = true;
    const state = this.state;
    // Held until the hook itself settles, past its timeout too: one call in flight per document.
    await this.runner.call('onChange', {
      docName: this.name,
      update,
      document: () => {
        const copy = new Y.Doc();
        Y.applyUpdate(copy, state());
        return copy;
      },
    }).settled;
    this.changeRunning = false;
    if (this.changes.length === 0) return;
    // What changed meanwhile: at once if the document unloaded (nothing else will report it).
    if (this.stopped) void this.callChange();
    else this.schedule();
  }

  private async callStore(): Promise<void> {
    this.storeRunning = true;
    for (;;) {
      const position = this.stored;
      await this.runner.call('onStoreDocument', { docName: this.name, position }).settled;
      // Later commits meanwhile are reported, the document unloaded or not.
      if (this.stored === position) break;
    }
    this.storeRunning = false;
  }
}

/**
 * Whether a change was made through this relay: by its clients, HTTP writes, server-side
 * documents or the relay itself; not one another relay of the mesh or cluster made (that relay
 * reports it).
 */
function madeHere(origin: unknown): boolean {
  if (!(origin instanceof RemoteOrigin)) return true;
  const source = origin.source as { kind: string; peerRelayId?: string };
  if (source.kind === 'cluster' || source.kind === 'authority') return false;
  return source.peerRelayId === undefined;
}

/** Origin of the backend's first content of a new document: not a RemoteOrigin, so stored as the relay's change. */
const SEED_ORIGIN = Symbol('capsync:seed');

/**
 * A document loaded with nothing stored: the backend's onLoadDocument may write its first
 * content into a fresh Y.Doc, applied to `doc` (the loaded document, whose update listener stores
 * it as the relay's change). A hook that fails or times out seeds nothing (what it writes after
 * its time is not used).
 */
export async function seedNewDocument(name: string, doc: Y.Doc, runner: HookRunner): Promise<void> {
  const seed = new Y.Doc();
  if ((await runner.run('onLoadDocument', { docName: name, doc: seed })) && seed.store.clients.size > 0) {
    Y.applyUpdate(doc, Y.encodeStateAsUpdate(seed), SEED_ORIGIN);
  }
  seed.destroy();
}
