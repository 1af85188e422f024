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
}

/**
 * A document opened on the relay itself, for a backend job that writes into documents without
 * a WebSocket (`RelayHandle.openDocument`). `doc` is a replica of the live document: what any
 * client writes appears in it, and edits made to it go to the relay as a client's would
 * (validated, stored, acknowledged, sent to every client). Contract:
 * - `flush()` resolves once every edit made so far is committed; it rejects with the error of
 *   an edit the relay refused (the replica then holds content the relay does not: close it);
 * - `close()` flushes (ignoring a refusal it already reported), stops following the document
 *   and releases it; the replica is destroyed. Closing twice is a no-op.
 */
export interface ServerDocument {
  readonly name: string;
  readonly doc: Y.Doc;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The relay side of a ServerDocument: a peer of the live document like a connection (the
 * broadcast sends it what others write; what it writes is not sent back to it), whose input
 * waits while the document is paused, as a connection's does.
 */
class ServerDocumentPeer implements DocPeer, ServerDocument {
  readonly kind = 'connection' as const;
  readonly doc = new Y.Doc();
  private readonly queued: Uint8Array[] = [];
  private writes: Promise<void> = Promise.resolve();
  private refused: unknown = null;
  private closed: Promise<void> | null = null;
  private readonly writer: ClientWriter;

  constructor(
    readonly name: string,
    private readonly live: RelayDoc,
    private readonly release: () => void,
    identity: string | undefined,
  ) {
    this.writer = { kind: 'client', source: this, subject: identity, declared: undefined };
    Y.applyUpdate(this.doc, live.encodeState(), this);
    live.peers.add(this);
    this.doc.on('update', this.onEdit);
  }

  sendUpdate(update: Uint8Array): void {
    Y.applyUpdate(this.doc, update, this);
  }

  sendAwareness(): void {}

  resume(): void {
    this.drain();
  }

  flush(): Promise<void> {
    this.drain();
    const refused = this.refused;
    return this.writes.then(() => {
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
      this.release();
    })());
  }

  private readonly onEdit = (update: Uint8Array, origin: unknown): void => {
    if (origin === this) return; // from the relay
    if (this.closed) return;
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

/** Opens `name` on the relay for a server-side writer (see ServerDocument). */
export async function openServerDocument(registry: DocRegistry, closing: () => boolean, name: string, options: OpenDocumentOptions = {}): Promise<ServerDocument> {
  if (closing()) throw new CapsyncError('shutting-down', 'relay is shutting down');
  validateDocName(name);
  const live = await registry.acquire(name);
  return new ServerDocumentPeer(name, live, () => registry.release(name), options.identity);
}
