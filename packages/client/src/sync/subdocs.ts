import { ObservableV2 } from 'lib0/observable';
import type * as Y from 'yjs';
import { CapsyncError, validateSubdocGuid } from '@capsync/core';
import type { DocHandleSettings } from '../doc-handle.js';
import type { LinkState, RelayLinkEvents, RelayLinkOptions } from './relay-link.js';

/** What Subdocs needs of a subdocument's handle (a DocHandle). */
export interface SubdocHandleLike {
  close(): Promise<void>;
  on(event: 'error', listener: (err: CapsyncError) => void): void;
}

export { subdocReplicaName } from '../storage/storage-adapter.js';

/** A subdocument's handle settings: its parent's, with its own Y.Doc (replica, session) and no shared refcount. */
export function subdocHandleSettings(parent: DocHandleSettings, guid: string, doc: Y.Doc): DocHandleSettings {
  const { release: _parentsOwn, ...settings } = parent;
  return { ...settings, subdoc: { guid, doc }, sessionId: `${parent.sessionId}/${guid}` };
}

/** The empty map every Subdocs starts with (never written: see `open`). */
const NONE = new Map<string, never>();

/**
 * The Yjs subdocuments of one open document that the app loaded (`subdoc.load()`, or
 * `autoLoad`), each with a document handle of its own (see DocHandle: `subdoc` settings): its
 * own local replica, outbox, pending count and status, and its own session on the client's
 * multiplexed socket (session-open with the subdocument's guid; the relay authorizes it with
 * the parent's permission).
 *
 * - A subdocument's handle opens when the parent's doc reports it `loaded` (or, at start, for
 *   every subdocument already marked to load: those of the replica just read from storage),
 *   and closes when the parent reports it `removed` (deleted, or `subdoc.destroy()`) and when
 *   the parent handle closes. A subdocument never loaded costs nothing: no replica, no session.
 * - One handle per guid. A guid loaded again while its last handle still closes opens once
 *   that one closed (one replica and one relay session per guid at a time).
 * - Subdocuments sync only over the multiplexed socket: without it (`multiplex: false`, or
 *   relays without `/.capsync/mux`) they stay local, and the handle reports an 'unsupported'
 *   error, which the parent handle reports too (`report`).
 */
export class Subdocs<H extends SubdocHandleLike = SubdocHandleLike> {
  /** Both start as the one shared empty map, replaced on first set: most documents have no subdocuments. */
  private open: Map<string, { doc: Y.Doc; handle: Promise<H> }> = NONE;
  private closing: Map<string, Promise<void>> = NONE;
  private closed = false;

  constructor(
    private readonly doc: Y.Doc,
    /** Opens the handle of a subdocument (its replica loaded, its session started). */
    private readonly openHandle: (guid: string, doc: Y.Doc) => Promise<H>,
    /** The parent handle's 'error' event. */
    private readonly report: (err: CapsyncError) => void,
  ) {}

  /** Opens the subdocuments marked to load, then follows the doc's `subdocs` events. */
  start(): void {
    for (const sub of this.doc.getSubdocs()) if (sub.shouldLoad) this.loadOrReport(sub);
    this.doc.on('subdocs', this.onSubdocs);
  }

  /** Guids of the subdocuments with an open (or opening) handle. */
  get guids(): string[] {
    return Array.from(this.open.keys());
  }

  /**
   * The handle of subdocument `guid`, or of that Y.Doc (a subdocument of this document); it
   * resolves once the subdocument's replica is loaded. A subdocument not loaded yet is loaded
   * (`subdoc.load()`) first. Rejects with CapsyncError 'internal' when this document has no
   * such subdocument, or once the parent handle closed, and with 'invalid-doc-name' for a guid
   * the relay would refuse (see validateSubdocGuid: such a subdocument is neither saved nor synced).
   */
  get(subdoc: Y.Doc | string): Promise<H> {
    const guid = typeof subdoc === 'string' ? subdoc : subdoc.guid;
    if (this.closed) return Promise.reject(new CapsyncError('internal', `the parent of subdocument "${guid}" is closed`));
    const open = this.open.get(guid);
    if (open) return open.handle;
    const sub = typeof subdoc === 'string' ? Array.from(this.doc.getSubdocs()).find((d) => d.guid === guid) : subdoc;
    if (!sub || !this.doc.getSubdocs().has(sub)) return Promise.reject(new CapsyncError('internal', `no subdocument "${guid}" in this document`));
    // Loading emits `subdocs` {loaded} (at once, or when the current transaction ends).
    sub.load();
    try {
      return this.open.get(guid)?.handle ?? this.load(sub);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Closes every subdocument's handle (the parent handle is closing). */
  async close(): Promise<void> {
    this.closed = true;
    this.doc.off('subdocs', this.onSubdocs);
    for (const guid of Array.from(this.open.keys())) this.unload(guid);
    await Promise.all(this.closing.values());
  }

  private readonly onSubdocs = ({ loaded, removed }: { loaded: Set<Y.Doc>; removed: Set<Y.Doc> }): void => {
    for (const sub of removed) if (this.open.get(sub.guid)?.doc === sub) this.unload(sub.guid);
    for (const sub of loaded) this.loadOrReport(sub);
  };

  private loadOrReport(sub: Y.Doc): void {
    if (this.closed || this.open.has(sub.guid)) return;
    try {
      void this.load(sub).catch(() => {}); // reported by load
    } catch (err) {
      // A guid the relay would refuse: the subdocument stays as it is, unsynced and unsaved.
      this.report(err as CapsyncError);
    }
  }

  /** Opens the handle of `sub` (after its previous one closed). Throws 'invalid-doc-name' for a guid the relay would refuse. */
  private load(sub: Y.Doc): Promise<H> {
    const guid = validateSubdocGuid(sub.guid);
    const previous = this.closing.get(guid) ?? Promise.resolve();
    const handle = previous.then(() => this.openHandle(guid, sub));
    handle.then(
      (h) =>
        h.on('error', (err) => {
          if (err.code === 'unsupported') this.report(err);
        }),
      (err: unknown) => this.report(err instanceof CapsyncError ? err : new CapsyncError('internal', `subdocument "${guid}" could not be opened`, { cause: err })),
    );
    if ((this.open as Map<string, unknown>) === NONE) this.open = new Map();
    this.open.set(guid, { doc: sub, handle });
    return handle;
  }

  private unload(guid: string): void {
    const entry = this.open.get(guid);
    if (!entry) return;
    this.open.delete(guid);
    const done = entry.handle
      .then((h) => h.close())
      .catch(() => {})
      .finally(() => {
        if (this.closing.get(guid) === done) this.closing.delete(guid);
      });
    if ((this.closing as Map<string, unknown>) === NONE) this.closing = new Map();
    this.closing.set(guid, done);
  }
}

/**
 * The link of a subdocument on a client without the multiplexed socket (`multiplex: false`):
 * it never connects. A socket of its own would name the parent document (the plain endpoint
 * has no subdocuments), so the subdocument's content would be merged into the parent's.
 * `start()` reports CapsyncError 'unsupported' (in a task: the handle's listeners come later).
 */
export class LocalOnlyLink extends ObservableV2<RelayLinkEvents> {
  readonly state: LinkState = 'offline';

  constructor(private readonly options: RelayLinkOptions) {
    super();
  }

  get currentUrl(): string {
    return this.options.urls[0]!;
  }

  start(): void {
    setTimeout(() => this.emit('error', [unsupportedSubdoc(this.options)]), 0);
  }

  stop(): void {}

  send(): boolean {
    return false;
  }

  healthy(): void {}
}

/** The error of a subdocument that cannot sync: subdocuments need the multiplexed endpoint. */
export function unsupportedSubdoc(options: Pick<RelayLinkOptions, 'docName' | 'subdoc'>): CapsyncError {
  return new CapsyncError(
    'unsupported',
    `subdocument "${options.subdoc}" of "${options.docName}" stays local: subdocuments sync only over the multiplexed socket (/.capsync/mux), which this client or its relays do not use`,
  );
}
