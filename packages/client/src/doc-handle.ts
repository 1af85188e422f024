import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { QuietObservable, AuthError, CapsyncError, CloseCode, MAX_DECLARED_WRITERS, errorFromCode, newDoc, type Channel, type Message } from '@capsync/core';
import { withTimeout } from './deadline.js';
import { LocalReplica } from './replica/local-replica.js';
import { DocIncarnation } from './replica/doc-incarnation.js';
import { applyStored } from './storage/compact-log.js';
import type { ReplicaSize, StorageAdapter } from './storage/storage-adapter.js';
import { syncStatus, type SyncStatus } from './status.js';
import { CROSS_TAB_ORIGIN, FROM_RELAY, STORAGE_ORIGIN } from './sync/origins.js';
import { applyFromRelay } from './sync/remote-apply.js';
import { declaredWriters } from './sync/declared-writers.js';
import { DocPresence } from './sync/doc-presence.js';
import { DocSync } from './sync/doc-sync.js';
import { awarenessLimitOf } from './sync/refusals.js';
import { Outbox } from './sync/outbox.js';
import { TabShare } from './sync/tab-share.js';
import { FencedValues } from './locks/fenced-values.js';
import type { RelayLinkOptions } from './sync/relay-link.js';
import type { RelaySockets } from './sync/relay-socket.js';
import { docLinkFor, type DocLink } from './sync/session-link.js';
import { Subdocs, subdocHandleSettings, subdocReplicaName } from './sync/subdocs.js';

export interface DocHandleEvents {
  status: (status: SyncStatus) => void;
  /** The number of local updates not yet durable on the relay changed. */
  pending: (pending: number) => void;
  /** Something the app should know; never thrown. Storage failures, refusals, relay errors. */
  error: (err: CapsyncError) => void;
  /**
   * The relay changed this document's permission while it is open (a refreshed token, or its
   * re-check of the credential): 'read', and local edits stay local and pending (the relay
   * refuses them); 'write' again. A permission withdrawn altogether is an 'error' with code
   * 'permission-revoked' (close 4412), and the document stops syncing.
   */
  permission: (permission: 'read' | 'write') => void;
}

export interface FlushOptions {
  /**
   * 'local': saved in local storage; 'relay': durable on the relay; 'quorum': durable on a
   * majority of the relays in the relay's mesh (it survives the loss of a minority of them), or,
   * on a cluster relay (PostgreSQL), committed with PostgreSQL's synchronous replication. A relay
   * that cannot give it (a cluster whose database has no synchronous standby) refuses at once:
   * the flush rejects with CapsyncError 'quorum-unsupported', never a silent 'relay'.
   * Default 'relay'.
   */
  durability?: 'local' | 'relay' | 'quorum';
  /** Reject with UnavailableError after this long. Default 10 s. */
  timeoutMs?: number;
}

export interface DocHandleSettings {
  storage: StorageAdapter;
  link: Omit<RelayLinkOptions, 'docName'>;
  /** The client's multiplexed socket (a session per document); null: a socket per document. */
  sockets: RelaySockets | null;
  crossTab: boolean;
  connect: boolean;
  localWriteDelayMs: number;
  compactAfterRows: number;
  /** Another tab's update still not reported durable after this long is sent by this tab too. */
  takeoverMs: number;
  gc: boolean;
  /** What to do with the stored replica when the relay says the document was deleted (ClientOptions.onDeleted). */
  onDeleted?: 'clear' | 'keep';
  sessionId: string;
  /** Default deadline of `cp.set`. */
  cpTimeoutMs: number;
  /** Set for a Yjs subdocument's handle (see Subdocs): its guid and its Y.Doc (the app's instance). */
  subdoc?: { guid: string; doc: Y.Doc };
  /**
   * The owner's reference count (the client shares one handle per document name): called by
   * `close()`, returns false while other references remain, and the handle then stays open.
   */
  release?: () => boolean;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * An open document: a Y.Doc replica loaded from local storage, kept in sync with the relay
 * and with other tabs, with an honest status and pending count.
 *
 * Every local change is queued for local storage, sent to the relay if connected, and shared
 * with other tabs at once. It stays pending until the relay acknowledges it as durable; the
 * pending count is stored with it, so a reload shows the same count, and the next connection
 * sends the relay everything it lacks.
 *
 * The handle wires its parts together: the local replica (persistence, LocalReplica), the
 * outbox (pending count), the relay link and the document's sync on it (a DocSession per connection: DocSync),
 * presence (DocPresence) and other tabs (TabShare); it owns the
 * status and the public API.
 */
// Over ~400 lines (2026-12-07): the public handle (open, flush, whenSynced, cp, awareness, events)
// over its parts (replica, outbox, sync, subdocs); most of its length is the API's doc comments.
// Flush and its durability levels are the next to move out.
export class DocHandle extends QuietObservable<DocHandleEvents> {
  readonly doc: Y.Doc;
  /** Fenced (CP) values: local reads, lease-fenced writes through the relay. */
  readonly cp: FencedValues;
  /** Loaded Yjs subdocuments of `doc`, a handle each: `await handle.subdocs.get(subdoc)` (see Subdocs). */
  readonly subdocs: Subdocs<DocHandle>;
  /** Set on a subdocument's handle (its `name` is the parent's): its guid. */
  readonly subdocGuid: string | undefined;
  /** Its local replica's name: a subdocument's cannot collide with a document's. */
  private readonly replicaName: string;
  /** How messages name it: `name`, or `name#guid` for a subdocument. */
  private readonly label: string;
  private readonly outbox: Outbox;
  private readonly link: DocLink;
  private readonly sync: DocSync;
  private replica!: LocalReplica;
  /** Document deletion: the replica's incarnation, and what a 'document-deleted' refusal does (DocIncarnation). */
  private readonly incarnation: DocIncarnation;
  private presence: DocPresence | null = null;
  private tabs: TabShare | null = null;
  private statusValue: SyncStatus = 'offline';
  private permissionValue: 'read' | 'write' | undefined;
  private closed = false;
  private closing: Promise<void> | null = null;
  private localCount = 0;
  private pendingAnnounced = false;

  private constructor(
    readonly name: string,
    private readonly settings: DocHandleSettings,
  ) {
    super();
    this.doc = settings.subdoc?.doc ?? newDoc({ gc: settings.gc });
    this.subdocGuid = settings.subdoc?.guid;
    this.replicaName = settings.subdoc ? subdocReplicaName(name, settings.subdoc.guid) : name;
    this.label = settings.subdoc ? `${name}#${settings.subdoc.guid}` : name;
    this.subdocs = new Subdocs(this.doc, (guid, doc) => DocHandle.open(name, subdocHandleSettings(settings, guid, doc)), (err) => this.emit('error', [err]));
    // 'pending' and 'status' are announced once per microtask, not once per keystroke.
    this.outbox = new Outbox(settings.sessionId, () => {
      if (this.pendingAnnounced) return;
      this.pendingAnnounced = true;
      queueMicrotask(() => {
        this.pendingAnnounced = false;
        if (this.closed) return;
        this.emit('pending', [this.outbox.pending]);
        this.updateStatus();
      });
    });
    // Object.assign, not a spread with more keys: ~3 µs per document in V8 (see core newDoc).
    const own: Pick<RelayLinkOptions, 'docName' | 'subdoc' | 'ownerHandles' | 'helloCapabilities'> = {
      docName: name,
      subdoc: settings.subdoc?.guid,
      ownerHandles: (code, reason) => awarenessLimitOf(code, reason) !== undefined,
      // The ids this connection uploads this user's edits under (this session's, and those of
      // pending edits of earlier sessions and other tabs): the relay claims only these for this
      // user, not other users' edits this replica may carry to a relay that lacks them.
      helloCapabilities: () => [
        ...declaredWriters(this.doc.clientID, this.outbox.writers(MAX_DECLARED_WRITERS), this.tabs?.writers(MAX_DECLARED_WRITERS) ?? []),
        ...this.incarnation.capabilities(),
      ],
    };
    const linkOptions: RelayLinkOptions = Object.assign({}, settings.link, own);
    this.link = docLinkFor(settings.sockets, linkOptions);
    const handle = this;
    this.incarnation = new DocIncarnation(
      {
        get replica() {
          return handle.replica;
        },
        holdsContent: () => this.doc.store.clients.size > 0,
        stopSaving: () => this.doc.off('update', this.onDocUpdate),
        error: (err) => this.emit('error', [err]),
      },
      settings.onDeleted ?? 'clear',
      settings.storage,
      this.replicaName,
      this.label,
    );
    this.sync = new DocSync(this.label, this.doc, this.outbox, {
      acked: (seq, durable) => {
        // Store the smaller outbox soon: a crash must not bring acknowledged updates back as pending.
        this.replica.schedule();
        this.tabs?.acked(seq, durable);
      },
      batched: (update, ids) => this.tabs?.shareUpdate(update, ids),
      applyRemote: (update) => applyFromRelay(this.doc, update, FROM_RELAY, this.onDocUpdate),
      // Someone has presence here: ours starts too (see `awareness`).
      awareness: (update) => this.startPresence().fromRelay(update),
      message: (msg) => this.onRelayMessage(msg),
      error: (err) => this.emit('error', [err]),
      healthy: () => this.link.healthy(),
      changed: () => this.updateStatus(),
      status: () => this.status,
    });
    this.cp = new FencedValues(
      this.doc,
      {
        send: (msg) => this.link.send(msg),
        onceOpen: (fn) => {
          const handler = () => {
            this.link.off('open', handler);
            fn();
          };
          this.link.on('open', handler);
          return () => this.link.off('open', handler);
        },
      },
      settings.cpTimeoutMs,
    );
  }

  /** Opens `name`: loads the local replica, then starts syncing. Never rejects for storage trouble. */
  static async open(name: string, settings: DocHandleSettings): Promise<DocHandle> {
    const handle = new DocHandle(name, settings);
    await handle.load();
    handle.attach();
    return handle;
  }

  private async load(): Promise<void> {
    const { replica, updates, outbox } = await LocalReplica.open(
      this.settings.storage,
      this.replicaName,
      { writeDelayMs: this.settings.localWriteDelayMs, compactAfterRows: this.settings.compactAfterRows },
      {
        // Deferred to a task: open() resolves, and the app subscribes, in microtasks that run
        // after the failure, so a microtask (queued during load) would still be too early.
        onError: (err) => setTimeout(() => this.emit('error', [err]), 0),
        beforeCommit: (batch) => this.outbox.fillBatch(batch),
        afterCommit: (batch) => this.outbox.committed(batch),
      },
    );
    this.replica = replica;
    // Nothing stored (a document opened here for the first time): no transaction, which costs a
    // Yjs transaction's maps and events per document.
    if (updates.length > 0) this.doc.transact(() => {
      for (const row of updates) {
        try {
          applyStored(this.doc, row);
        } catch (err) {
          const failure = new CapsyncError('invalid-update', `a stored update of "${this.label}" could not be loaded; it is kept`, { cause: err });
          setTimeout(() => this.emit('error', [failure]), 0);
        }
      }
    }, STORAGE_ORIGIN);
    this.outbox.load(outbox);
    // Compaction on open keeps load time bounded; it never grows the stored replica.
    if (updates.length > 1) void replica.compact();
  }

  private attach(): void {
    this.doc.on('update', this.onDocUpdate);
    this.link.on('state', () => this.updateStatus());
    this.link.on('open', (_connection, _url, channel) => this.onLinkOpen(channel));
    this.link.on('close', ({ code, reason }) => this.onLinkClose(code, reason));
    this.link.on('error', (err) => this.emit('error', [err]));
    if (this.settings.crossTab) {
      const handle = this;
      this.tabs = new TabShare({
        name: this.replicaName,
        doc: this.doc,
        get awareness() {
          return handle.awareness;
        },
        outbox: this.outbox,
        sessionId: this.settings.sessionId,
        takeoverMs: this.settings.takeoverMs,
        sendUpdate: (update) => this.sync.sendUpdate(update),
        ownPresence: () => this.presence?.own() ?? null,
        error: (err) => this.emit('error', [err]),
      });
      this.tabs.open();
    }
    if (this.settings.connect) this.link.start();
    this.subdocs.start();
    this.onPageHide = () => void this.replica.commit().catch(() => {});
    (globalThis as { addEventListener?: (t: string, f: () => void) => void }).addEventListener?.('pagehide', this.onPageHide);
  }

  private onPageHide: (() => void) | null = null;

  /** The Awareness and what announces it (see `awareness`); once. */
  private startPresence(): DocPresence {
    return (this.presence ??= DocPresence.start(this.doc, {
      relay: (update) => this.sync.send({ type: 'awareness', update }),
      tabs: (update) => this.tabs?.sharePresence(update),
      error: (err) => this.emit('error', [err]),
    }, this.closed));
  }

  // ---- public API ----

  /**
   * This tab's presence and others' (a y-protocols Awareness of `doc`). Made on first use, or
   * when presence of others arrives (from the relay or another tab): until then the document
   * costs no Awareness (its timer, its maps), and this tab announces no empty state to the
   * relay nor clears it on close — one message each way per document, for each of the hundreds
   * of documents a client may open without showing presence in them. Once made, this tab's
   * state (`{}` at first) is announced at once and on every new connection, as before.
   */
  get awareness(): awarenessProtocol.Awareness {
    return this.startPresence().awareness;
  }

  get status(): SyncStatus {
    return this.statusValue;
  }

  /**
   * The permission the relay last said it changed this document's to ('permission' event), or
   * undefined while it said nothing (the permission the document was opened with holds).
   */
  get permission(): 'read' | 'write' | undefined {
    return this.permissionValue;
  }

  /**
   * The relay base URL this handle is connected to, or the one its next attempt goes to (with
   * a list of relays it changes on failover; the 'status' event follows every reconnect).
   */
  get relayUrl(): string {
    return this.link.currentUrl;
  }

  /**
   * Once the relay said the document was deleted (a 'document-deleted' error) and the handle
   * erases its stored replica (`onDeleted: 'clear'`, the default): resolves when it is erased.
   * Null otherwise.
   */
  get cleared(): Promise<void> | null {
    return this.incarnation.cleared;
  }

  /** Local updates not yet durable on the relay. */
  get pending(): number {
    return this.outbox.pending;
  }

  /** False when local changes are not being saved (memory storage, or storage failed). */
  get savingLocally(): boolean {
    return this.replica.saving;
  }

  /**
   * Resolves when every local update made so far is saved locally ('local') or durable on
   * the relay ('relay'). Rejects with UnavailableError after `timeoutMs`, and with the
   * LocalStorageError when 'local' was asked of a replica whose storage failed.
   */
  async flush(options: FlushOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.assertOpen();
    if ((options.durability ?? 'relay') === 'local') {
      await withTimeout(this.replica.commit(), timeoutMs, () => `local save of "${this.label}" did not finish within ${timeoutMs} ms`);
      return;
    }
    if (options.durability === 'quorum') {
      await this.sync.flushQuorum(timeoutMs);
      return;
    }
    const waiter = this.outbox.whenDurable();
    await withTimeout(waiter.promise, timeoutMs, () => {
      waiter.cancel();
      return `${this.pending} update(s) of "${this.label}" not durable on the relay within ${timeoutMs} ms (status: ${this.status})`;
    });
  }

  /**
   * Resolves once this replica holds everything the relay had when this was called (a fresh
   * sync round trip). Rejects with UnavailableError after `timeoutMs`.
   */
  async whenSynced(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.assertOpen();
    return this.sync.whenSynced(timeoutMs);
  }

  /** Connects (again) after `disconnect()` or a refusal that stopped reconnecting. */
  connect(): void {
    this.assertOpen();
    this.link.start();
  }

  /** Goes offline on purpose: edits keep working locally and sync on `connect()`. */
  disconnect(): void {
    this.assertOpen();
    this.link.stop();
  }

  /** Size of the locally stored log (rows and bytes). */
  localSize(): Promise<ReplicaSize> {
    return this.replica.size();
  }

  /** Merges the locally stored log now (it also happens past a threshold and on open). */
  async compactLocal(): Promise<void> {
    await this.replica.commit().catch(() => {});
    await this.replica.compact();
  }

  /**
   * Clears this tab's presence, saves what is queued locally and disconnects. Local changes
   * not yet durable on the relay stay in the stored outbox and go out on the next open.
   * The Y.Doc stays readable; changes made to it after close are not saved or synced.
   */
  close(): Promise<void> {
    if (!this.closing && this.settings.release && !this.settings.release()) return Promise.resolve();
    if (!this.closing) this.closing = this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    await this.subdocs.close();
    // Tell the relay and other tabs we left while the link is still up.
    this.presence?.close();
    this.doc.off('update', this.onDocUpdate);
    if (this.onPageHide) (globalThis as { removeEventListener?: (t: string, f: () => void) => void }).removeEventListener?.('pagehide', this.onPageHide);
    this.tabs?.close();
    this.cp.close();
    this.sync.close();
    await this.replica.close();
    this.link.destroy();
    this.statusValue = 'offline';
    super.destroy();
  }

  // ---- local changes ----

  private readonly onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === STORAGE_ORIGIN) return;
    this.replica.append({ data: update, format: 'v1' });
    if (origin === FROM_RELAY || origin === CROSS_TAB_ORIGIN) return;
    const id = `${this.settings.sessionId}:${this.localCount++}`;
    this.sync.queueLocal(update, this.outbox.add(id, this.doc.clientID), id);
  };

  // ---- the relay ----

  private onLinkOpen(channel: Channel): void {
    this.sync.connect(channel);
    this.presence?.announce();
    this.updateStatus();
  }

  private onLinkClose(code: number, reason: string): void {
    if (code === CloseCode.DocumentDeleted) this.incarnation.deleted(reason);
    this.cp.onLinkClose();
    this.sync.disconnected();
    this.tabs?.onLinkClose();
    const limit = awarenessLimitOf(code, reason);
    if (limit !== undefined) this.presence?.refused(limit, reason);
    // Presence of others on the relay is unknown now; keep it until it times out.
    this.updateStatus();
  }

  /** Opens a new session with the relay, if connected: its sync step 2 carries every pending edit. */
  private resync(): void {
    if (this.closed || this.link.state === 'offline') return;
    this.link.stop();
    this.link.start();
  }

  /** A message of the relay that is not the sync's. */
  private onRelayMessage(msg: Message): void {
    switch (msg.type) {
      case 'error':
        // Once told the document became read-only, each refused edit says nothing new.
        if (msg.code === 'read-only' && this.permissionValue === 'read') return;
        this.emit('error', [errorFromCode(msg.code, msg.message)]);
        return;
      case 'permission':
        if (msg.permission === this.permissionValue) return;
        this.permissionValue = msg.permission;
        if (msg.permission === 'read') {
          this.emit('error', [new AuthError('read-only', `write permission on "${this.label}" was withdrawn: local edits stay local and pending`)]);
        } else if (this.outbox.pending > 0) {
          // Edits the relay refused meanwhile are pending, never stored there: a new session's
          // sync step 2 carries them (a session of the same socket, on a multiplexed one).
          setTimeout(() => this.resync(), 0);
        }
        this.emit('permission', [msg.permission]);
        return;
      case 'auth-denied':
        this.emit('error', [new AuthError('forbidden', msg.reason)]);
        return;
      case 'cp-reply':
        this.cp.onReply(msg);
        return;
      case 'incarnation':
        this.incarnation.learned(msg.incarnation);
        return;
      default:
        // The link used pongs as signs of life; nothing else is for a client's document.
        return;
    }
  }

  // ---- status ----

  private updateStatus(): void {
    if (this.closed) return;
    const next = syncStatus(this.link.state, this.sync.caughtUp, this.outbox.pending);
    if (next === this.statusValue) return;
    this.statusValue = next;
    this.emit('status', [next]);
  }

  private assertOpen(): void {
    if (this.closed) throw new CapsyncError('internal', `document "${this.label}" is closed`);
  }
}
