import * as Y from 'yjs';
import { CapsyncError, validateDocName } from '@capsync/core';
import type { ClientWriter } from './doc-writer.js';
import type { DocRegistry } from './doc-registry.js';
import type { DocPeer } from './relay-doc-deps.js';
import type { RelayDoc } from './relay-doc.js';

export interface OpenDocumentOptions {
  /**
   * Who writes (as a token's `sub`): on a relay with auth, the client ids the document's edits
   * are made under are claimed for it, as for a client of that identity. Default none (it may
   * then write only under client ids nobody owns, as a token without `sub`).
   */
  identity?: string;
  /**
   * How long to wait while the document cannot be copied: it reloads from storage (after a write
   * that failed; that waits for storage to be reachable) or commits a fenced write. Past it the
   * open rejects with CapsyncError 'unavailable'. Default 10 s.
   */
  timeoutMs?: number;
}

const DEFAULT_OPEN_TIMEOUT_MS = 10_000;

/**
 * A document opened on the relay itself, for a backend job that writes into documents without
 * a WebSocket (`RelayHandle.openDocument`). `doc` is a replica of the live document: what any
 * client writes appears in it, and edits made to it go to the relay as a client's would
 * (validated, stored, acknowledged, sent to every client). Contract:
 * - `flush()` resolves once every edit made so far is committed; it rejects with the error of
 *   an edit the relay refused (the replica then holds content the relay does not: close it);
 * - `close()` flushes (ignoring a refusal it already reported), stops following the document
 *   and releases it; the replica is destroyed. Closing twice is a no-op.
 * - The relay's `close()` closes every ServerDocument still open before it closes storage: what
 *   was edited before is committed with the rest of the document (a flush already waiting
 *   resolves then), and `flush()` called after that rejects with CapsyncError 'shutting-down'
 *   (edits made to `doc` after it went nowhere; so do edits the document held back while paused,
 *   a flush waiting for them rejects). Opening one while the relay closes rejects with
 *   'shutting-down' too.
 * - When the document is deleted (`DELETE /v1/docs/:name`), `flush()` rejects with
 *   DocumentDeletedError ('document-deleted') from then on, and edits made to `doc` go nowhere.
 *   Close it; a new one opens the new (empty) document.
 */
export interface ServerDocument {
  readonly name: string;
  readonly doc: Y.Doc;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The relay side of a ServerDocument: a peer of the live document like a connection (the
 * broadcast sends it what others write, and in a busy turn its own small changes with them, which
 * its Y.Doc skips), whose input
 * waits while the document is paused, as a connection's does.
 */
class ServerDocumentPeer implements DocPeer, ServerDocument {
  readonly kind = 'connection' as const;
  readonly doc = new Y.Doc();
  private readonly queued: Uint8Array[] = [];
  private writes: Promise<void> = Promise.resolve();
  private refused: unknown = null;
  /** Flushes waiting for the queued edits to be sent (the document paused). */
  private readonly drainWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private closed: Promise<void> | null = null;
  /** Set when the relay closed it (its own close): what `flush` rejects with from then on. */
  private shutDown: CapsyncError | null = null;
  /** Set when the document was deleted (closeDeleted): what `flush` rejects with from then on. */
  private deleted: CapsyncError | null = null;
  private readonly writer: ClientWriter;

  constructor(
    readonly name: string,
    private readonly live: RelayDoc,
    private readonly release: () => void,
    identity: string | undefined,
    /** The relay's open server documents: this one is in it until it closes. */
    private readonly open: Set<ServerDocumentPeer>,
  ) {
    this.writer = { kind: 'client', source: this, subject: identity, declared: undefined };
    Y.applyUpdate(this.doc, live.encodeState(), this);
    live.peers.add(this);
    this.doc.on('update', this.onEdit);
    open.add(this);
  }

  sendUpdate(update: Uint8Array): void {
    Y.applyUpdate(this.doc, update, this);
  }

  sendAwareness(): void {}

  resume(): void {
    this.drain();
    if (this.queued.length === 0) for (const waiter of this.drainWaiters.splice(0)) waiter.resolve();
  }

  /**
   * The document was deleted (DocPeer): its edits from now on, and those not yet sent, go
   * nowhere; `flush` rejects with 'document-deleted'. Its close still releases its copy (only
   * that copy: DocRegistry.release).
   */
  closeDeleted(err: CapsyncError): void {
    if (this.deleted) return;
    this.deleted = err;
    this.queued.length = 0;
    for (const waiter of this.drainWaiters.splice(0)) waiter.reject(err);
  }

  flush(): Promise<void> {
    if (this.shutDown) return Promise.reject(this.shutDown);
    if (this.deleted) return Promise.reject(this.deleted);
    this.drain();
    const refused = this.refused;
    // Edits queued while the document is paused (a commit or a reload: it always resumes) are
    // sent when it resumes: flush waits for them too, not only for what was sent.
    const drained = this.queued.length === 0 ? Promise.resolve() : new Promise<void>((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
    return drained.then(() => this.writes).then(() => {
      if (refused !== null || this.refused !== null) {
        const err = this.refused ?? refused;
        this.refused = null;
        throw err;
      }
    });
  }

  close(): Promise<void> {
    return (this.closed ??= (async () => {
      await this.flush().catch(() => {});
      this.doc.off('update', this.onEdit);
      this.live.peers.delete(this);
      this.doc.destroy();
      this.open.delete(this);
      this.release();
    })());
  }

  /**
   * The relay closes: what was edited goes to the document (the relay's close commits it with
   * the rest, and does not wait for storage to come back), and it closes. Edits the document
   * held back (paused) are not sent: the flushes waiting for them reject with 'shutting-down'.
   */
  shutdown(): Promise<void> {
    const err = (this.shutDown ??= new CapsyncError('shutting-down', `the relay closed server document "${this.name}"`));
    this.drain();
    this.queued.length = 0;
    for (const waiter of this.drainWaiters.splice(0)) waiter.reject(err);
    return this.close(); // its flush rejects at once now: it detaches without waiting for commits
  }

  private readonly onEdit = (update: Uint8Array, origin: unknown): void => {
    if (origin === this) return; // from the relay
    if (this.closed || this.deleted) return;
    this.queued.push(update);
    this.drain();
  };

  private drain(): void {
    // Input waits while the document recovers or commits a fenced write (`resume` comes after).
    while (this.queued.length > 0 && !this.live.paused) {
      const update = this.queued.shift()!;
      try {
        const { durable } = this.live.receive(update, this.writer);
        this.writes = Promise.all([this.writes, durable.catch((err: unknown) => void (this.refused ??= err))]).then(() => {});
      } catch (err) {
        this.refused ??= err;
      }
    }
  }
}

/** The server documents open on a relay, which its close closes (see ServerDocument). */
export class OpenServerDocuments {
  private readonly open = new Set<ServerDocumentPeer>();

  constructor(
    private readonly registry: DocRegistry,
    private readonly closing: () => boolean,
  ) {}

  /** Opens `name` for a server-side writer; rejects with 'shutting-down' while the relay closes. */
  async openDocument(name: string, options: OpenDocumentOptions = {}): Promise<ServerDocument> {
    if (this.closing()) throw shuttingDown();
    validateDocName(name);
    const deadline = performance.now() + (options.timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS);
    for (let attempt = 1; ; attempt++) {
      const live = await this.registry.acquire(name);
      // Its copy is made from the document's state: not from one being replaced by a reload
      // (content it drops would stay in the copy, and edits built on it would never integrate),
      // nor while it holds a fenced value not yet durable. Checked again on waking: the input
      // the resume processed may have started another reload.
      const taking = await takingInput(live, deadline);
      // The relay began to close while it loaded: its close does not know of this one.
      if (this.closing()) {
        this.registry.release(name, live);
        throw shuttingDown();
      }
      if (!taking) {
        this.registry.release(name, live);
        throw new CapsyncError('unavailable', `document "${name}" is reloading from storage; retry`);
      }
      if (!live.unloaded && !this.registry.superseded(live)) {
        return new ServerDocumentPeer(name, live, () => this.registry.release(name, live), options.identity, this.open);
      }
      // Deleted or unloaded meanwhile: acquired again, which loads the document as it is now (a
      // few times, as a connection does; each after a turn of the event loop).
      this.registry.release(name, live);
      if (attempt === 3) throw new CapsyncError('storage-failure', `document "${name}" was deleted or unloaded again and again while it opened`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Closes every open one (see ServerDocumentPeer.shutdown): before the registry, which commits their edits. */
  async closeAll(): Promise<void> {
    await Promise.all(Array.from(this.open, (d) => d.shutdown()));
  }
}

/** Waits until `live` takes input (true), is unloaded (true: the caller sees it), or `deadline` passes (false). */
async function takingInput(live: RelayDoc, deadline: number): Promise<boolean> {
  while (live.paused && !live.unloaded) {
    const left = deadline - performance.now();
    if (left <= 0) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, left)));
    await Promise.race([live.whenTakingInput(), timedOut]);
    clearTimeout(timer);
  }
  return true;
}

function shuttingDown(): CapsyncError {
  return new CapsyncError('shutting-down', 'relay is shutting down');
}
