import { ObservableV2 } from 'lib0/observable';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { AuthError, CapsyncError, LimitExceededError, UnavailableError, type Message } from '@capsync/core';
import { LocalReplica } from './replica/local-replica.js';
import { applyStored } from './storage/compact-log.js';
import type { ReplicaSize, StorageAdapter } from './storage/storage-adapter.js';
import { syncStatus, type SyncStatus } from './status.js';
import { openCrossTab, type CrossTabChannel, type CrossTabMessage } from './sync/cross-tab.js';
import { CROSS_TAB_ORIGIN, RELAY_ORIGIN, REKEY_ORIGIN, STORAGE_ORIGIN } from './sync/origins.js';
import { ClientRekey, type RekeyInfo } from './sync/client-rekey.js';
import { awarenessLimitOf, isNotOwnerClose } from './sync/refusals.js';
import { Outbox, type OutboxEntry } from './sync/outbox.js';
import { FencedValues } from './locks/fenced-values.js';
import { RelayLink, type RelayLinkOptions } from './sync/relay-link.js';

export interface DocHandleEvents {
  status: (status: SyncStatus) => void;
  /** The number of local updates not yet durable on the relay changed. */
  pending: (pending: number) => void;
  /** Something the app should know; never thrown. Storage failures, refusals, relay errors. */
  error: (err: CapsyncError) => void;
  /**
   * The relay refused a client id this replica holds content under (another identity owns it
   * there): that content was re-made under a fresh client id (`to`), which new edits use too
   * when `from` was this document's own. It is pending until the relay acknowledges it. When
   * re-keying does not help, an 'error' with a NotOwnerError follows instead and the handle
   * stops connecting (see ClientRekey).
   */
  rekey: (info: RekeyInfo) => void;
}

export interface FlushOptions {
  /**
   * 'local': saved in local storage; 'relay': durable on the relay; 'quorum': durable on a
   * majority of the relays in the relay's mesh (it survives the loss of a minority of them).
   * Default 'relay'.
   */
  durability?: 'local' | 'relay' | 'quorum';
  /** Reject with UnavailableError after this long. Default 10 s. */
  timeoutMs?: number;
}

export interface DocHandleSettings {
  storage: StorageAdapter;
  link: Omit<RelayLinkOptions, 'docName'>;
  crossTab: boolean;
  connect: boolean;
  localWriteDelayMs: number;
  compactAfterRows: number;
  /** Another tab's update still not reported durable after this long is sent by this tab too. */
  takeoverMs: number;
  gc: boolean;
  sessionId: string;
  /** Default deadline of `cp.set`. */
  cpTimeoutMs: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** A Yjs update with nothing in it: the barrier of a quorum flush. */
const EMPTY_UPDATE = new Uint8Array([0, 0]);

/**
 * An open document: a Y.Doc replica loaded from local storage, kept in sync with the relay
 * and with other tabs, with an honest status and pending count.
 *
 * Every local change is queued for local storage, sent to the relay if connected, and shared
 * with other tabs at once. It stays pending until the relay acknowledges it as durable; the
 * pending count is stored with it, so a reload shows the same count, and the next connection
 * sends the relay everything it lacks.
 */
export class DocHandle extends ObservableV2<DocHandleEvents> {
  readonly doc: Y.Doc;
  readonly awareness: awarenessProtocol.Awareness;
  /** Fenced (CP) values: local reads, lease-fenced writes through the relay. */
  readonly cp: FencedValues;
  private readonly outbox: Outbox;
  private readonly link: RelayLink;
  private readonly rekey: ClientRekey;
  private replica!: LocalReplica;
  private crossTab: CrossTabChannel | null = null;
  private statusValue: SyncStatus = 'offline';
  private closed = false;
  private closing: Promise<void> | null = null;

  // Per connection: document messages sent (the relay's ack positions), sync rounds.
  private connection = 0;
  private seq = 0;
  private step1Sent = 0;
  private step2Received = 0;
  private caughtUp = false;
  /** This connection's sync step 2 went out: a barrier sent now covers every local update. */
  private step2Sent = false;
  private readonly quorumWaiters = new Set<{ connection: number; seq: number; resolve(): void }>();
  private readonly syncWaiters = new Set<{ connection: number; target: number; resolve(): void }>();

  private localCount = 0;
  private pendingAnnounced = false;
  /** Other tabs' updates not yet reported durable: entry id → update and arrival time. */
  private readonly foreign = new Map<string, { update: Uint8Array; at: number }>();
  private takeoverTimer: ReturnType<typeof setTimeout> | null = null;
  /** Other tabs' updates sent by this tab, by message seq, to report them durable on ack. */
  private takenOver: { seq: number; entries: string[] }[] = [];

  private constructor(
    readonly name: string,
    private readonly settings: DocHandleSettings,
  ) {
    super();
    this.doc = new Y.Doc({ gc: settings.gc });
    this.awareness = new awarenessProtocol.Awareness(this.doc);
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
    this.rekey = new ClientRekey(this.doc, this.awareness, REKEY_ORIGIN);
    this.link = new RelayLink({
      ...settings.link,
      docName: name,
      ownerHandles: (code, reason) => isNotOwnerClose(code, reason) || awarenessLimitOf(code, reason) !== undefined,
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
      this.name,
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
    this.doc.transact(() => {
      for (const row of updates) {
        try {
          applyStored(this.doc, row);
        } catch (err) {
          const failure = new CapsyncError('invalid-update', `a stored update of "${this.name}" could not be loaded; it is kept`, { cause: err });
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
    this.awareness.on('update', this.onAwarenessUpdate);
    this.link.on('state', () => this.updateStatus());
    this.link.on('open', (connection) => this.onLinkOpen(connection));
    this.link.on('message', (msg) => this.onRelayMessage(msg));
    this.link.on('close', ({ code, reason }) => this.onLinkClose(code, reason));
    this.link.on('error', (err) => this.emit('error', [err]));
    if (this.settings.crossTab) {
      this.crossTab = openCrossTab(this.name, (msg) => this.onCrossTab(msg));
      this.crossTab?.post({ type: 'sync-step-1', from: this.settings.sessionId, stateVector: Y.encodeStateVector(this.doc) });
    }
    if (this.settings.connect) this.link.start();
    this.onPageHide = () => void this.replica.commit().catch(() => {});
    (globalThis as { addEventListener?: (t: string, f: () => void) => void }).addEventListener?.('pagehide', this.onPageHide);
  }

  private onPageHide: (() => void) | null = null;

  // ---- public API ----

  get status(): SyncStatus {
    return this.statusValue;
  }

  /**
   * The relay base URL this handle is connected to, or the one its next attempt goes to (with
   * a list of relays it changes on failover; the 'status' event follows every reconnect).
   */
  get relayUrl(): string {
    return this.link.currentUrl;
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
      await withTimeout(this.replica.commit(), timeoutMs, () => `local save of "${this.name}" did not finish within ${timeoutMs} ms`);
      return;
    }
    if (options.durability === 'quorum') {
      await this.flushQuorum(timeoutMs);
      return;
    }
    const waiter = this.outbox.whenDurable();
    await withTimeout(waiter.promise, timeoutMs, () => {
      waiter.cancel();
      return `${this.pending} update(s) of "${this.name}" not durable on the relay within ${timeoutMs} ms (status: ${this.status})`;
    });
  }

  /**
   * Quorum durability with a barrier: an empty update sent after this connection's sync step 2
   * (which carries every local update the relay lacked) and after every later local update.
   * The relay answers `quorum-ack` once everything it had applied by then is durable on a
   * majority of its mesh. A new connection (another relay, after failover) gets a new barrier.
   */
  private async flushQuorum(timeoutMs: number): Promise<void> {
    // Local updates of this task are still queued for the next microtask: send them first.
    this.sendOutgoing();
    let waiter!: { connection: number; seq: number; resolve(): void };
    const promise = new Promise<void>((resolve) => {
      waiter = { connection: -1, seq: 0, resolve };
      this.quorumWaiters.add(waiter);
    });
    this.sendQuorumBarrier();
    await withTimeout(promise, timeoutMs, () => {
      this.quorumWaiters.delete(waiter);
      return `updates of "${this.name}" not durable on a majority of relays within ${timeoutMs} ms (status: ${this.status})`;
    });
  }

  /** Sends one barrier for every quorum waiter not yet covered by one on this connection. */
  private sendQuorumBarrier(): void {
    if (!this.step2Sent) return;
    const waiting = Array.from(this.quorumWaiters).filter((w) => w.connection !== this.connection);
    if (waiting.length === 0) return;
    if (!this.sendDoc({ type: 'update', update: EMPTY_UPDATE })) return;
    for (const w of waiting) {
      w.connection = this.connection;
      w.seq = this.seq;
    }
  }

  /**
   * Resolves once this replica holds everything the relay had when this was called (a fresh
   * sync round trip). Rejects with UnavailableError after `timeoutMs`.
   */
  async whenSynced(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.assertOpen();
    let waiter!: { connection: number; target: number; resolve(): void };
    const promise = new Promise<void>((resolve) => {
      waiter = { connection: -1, target: 0, resolve };
      this.syncWaiters.add(waiter);
    });
    // On an open link ask now; otherwise the next connection's first round answers it.
    if (this.link.state === 'open' && this.sendStep1()) {
      waiter.connection = this.connection;
      waiter.target = this.step1Sent;
    }
    await withTimeout(promise, timeoutMs, () => {
      this.syncWaiters.delete(waiter);
      return `"${this.name}" not synced with the relay within ${timeoutMs} ms (status: ${this.status})`;
    });
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
    if (!this.closing) this.closing = this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    // Tell the relay and other tabs we left while the link is still up.
    this.awareness.setLocalState(null);
    this.doc.off('update', this.onDocUpdate);
    this.awareness.off('update', this.onAwarenessUpdate);
    this.awareness.destroy();
    if (this.onPageHide) (globalThis as { removeEventListener?: (t: string, f: () => void) => void }).removeEventListener?.('pagehide', this.onPageHide);
    if (this.takeoverTimer) clearTimeout(this.takeoverTimer);
    this.crossTab?.close();
    this.cp.close();
    await this.replica.close();
    this.link.destroy();
    for (const w of this.syncWaiters) this.syncWaiters.delete(w);
    this.quorumWaiters.clear();
    this.statusValue = 'offline';
    super.destroy();
  }

  // ---- local changes ----

  private readonly onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === STORAGE_ORIGIN) return;
    this.replica.append({ data: update, format: 'v1' });
    if (origin === RELAY_ORIGIN || origin === CROSS_TAB_ORIGIN) return;
    const id = `${this.settings.sessionId}:${this.localCount++}`;
    const entry = this.outbox.add(id);
    // Local updates of one task go out together in the next microtask: a keystroke still
    // leaves at once, but a burst (paste, scripted edits, undo of many) is one message, not
    // thousands the relay must validate, store and acknowledge one by one.
    if (this.outgoing.length === 0) queueMicrotask(this.sendOutgoing);
    this.outgoing.push({ update, entry, id });
  };

  private outgoing: { update: Uint8Array; entry: OutboxEntry; id: string }[] = [];

  private readonly sendOutgoing = (): void => {
    const batch = this.outgoing;
    this.outgoing = [];
    if (batch.length === 0 || this.closed) return;
    const update = batch.length === 1 ? batch[0]!.update : Y.mergeUpdates(batch.map((b) => b.update));
    // Offline: nothing to send; the next connection's sync step 2 carries these.
    if (this.sendDoc({ type: 'update', update })) for (const b of batch) this.outbox.sent(b.entry, this.seq);
    this.crossTab?.post({ type: 'update', from: this.settings.sessionId, update, entries: batch.map((b) => b.id) });
  };

  private readonly onAwarenessUpdate = (
    { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ): void => {
    const self = this.awareness.clientID;
    if (origin === RELAY_ORIGIN || origin === CROSS_TAB_ORIGIN) {
      // Someone removed our state (a relay drops states a leaving stock peer echoed for us).
      // y-protocols keeps it locally and bumps its clock; announce it again so others keep it.
      if (!removed.includes(self) || this.awareness.getLocalState() === null) return;
    } else if (!added.includes(self) && !updated.includes(self) && !removed.includes(self)) {
      // Only our own presence is ours to announce (others' states time out on their own).
      return;
    }
    const update = awarenessProtocol.encodeAwarenessUpdate(this.awareness, [self]);
    this.link.send({ type: 'awareness', update });
    this.crossTab?.post({ type: 'awareness', from: this.settings.sessionId, update });
  };

  // ---- the relay ----

  /** Sends a document-carrying message (counted: acks name these positions). */
  private sendDoc(msg: Extract<Message, { type: 'update' | 'sync-step-2' }>): boolean {
    // Without the client ids the relay refused (see ClientRekey); the very same bytes otherwise.
    if (!this.link.send({ type: msg.type, update: this.rekey.outgoing(msg.update) })) return false;
    this.seq++;
    return true;
  }

  private sendStep1(): boolean {
    if (!this.link.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(this.doc) })) return false;
    this.step1Sent++;
    return true;
  }

  private onLinkOpen(connection: number): void {
    this.connection = connection;
    this.seq = 0;
    this.step2Sent = false;
    this.step1Sent = 0;
    this.step2Received = 0;
    this.caughtUp = false;
    this.sendStep1();
    // Waiters from before this connection are answered by its first sync round.
    for (const w of this.syncWaiters) {
      if (w.connection !== connection) {
        w.connection = connection;
        w.target = 1;
      }
    }
    if (this.awareness.getLocalState() !== null) {
      this.link.send({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.awareness.clientID]) });
    }
    this.updateStatus();
  }

  private onLinkClose(code: number, reason: string): void {
    this.cp.onLinkClose();
    this.outbox.resetSent();
    this.takenOver = [];
    this.caughtUp = false;
    if (isNotOwnerClose(code, reason)) this.onNotOwner(reason);
    const limit = awarenessLimitOf(code, reason);
    if (limit !== undefined) this.onPresenceRefused(limit, reason);
    // Presence of others on the relay is unknown now; keep it until it times out.
    this.updateStatus();
  }

  /** A 4403 not-owner: re-key and let the link reconnect, or stop with the typed error. */
  private onNotOwner(reason: string): void {
    const outcome = this.rekey.onRefused(reason);
    if (outcome instanceof CapsyncError) {
      this.link.stop();
      this.emit('error', [outcome]);
    } else {
      this.emit('rekey', [outcome]);
    }
  }

  /**
   * The relay closed the link over this tab's presence (a state over its size limit): sending
   * it again would be refused again, reconnect after reconnect. Drop it; documents sync on, and
   * a new (smaller) state the app sets goes out as usual.
   */
  private onPresenceRefused(limit: string, reason: string): void {
    if (this.awareness.getLocalState() !== null) this.awareness.setLocalState(null);
    this.emit('error', [new LimitExceededError(limit, `the relay refused this tab's presence, which was dropped: ${reason}`)]);
  }

  private onRelayMessage(msg: Message): void {
    switch (msg.type) {
      case 'sync-step-1': {
        this.rekey.relayHolds(msg.stateVector);
        let update: Uint8Array;
        try {
          update = Y.encodeStateAsUpdate(this.doc, msg.stateVector);
        } catch (err) {
          this.emit('error', [new CapsyncError('bad-message', 'the relay sent a state vector that does not decode', { cause: err })]);
          return;
        }
        // Everything the relay lacks goes out here, so it carries every pending update.
        if (this.sendDoc({ type: 'sync-step-2', update })) {
          this.outbox.sentAll(this.seq);
          this.step2Sent = true;
          this.sendQuorumBarrier();
        }
        return;
      }
      case 'sync-step-2':
        this.applyRemote(msg.update);
        this.step2Received++;
        if (!this.caughtUp) {
          this.caughtUp = true;
          this.link.healthy();
        }
        for (const w of this.syncWaiters) {
          if (w.connection === this.connection && w.target <= this.step2Received) {
            this.syncWaiters.delete(w);
            w.resolve();
          }
        }
        this.updateStatus();
        return;
      case 'update':
        this.applyRemote(msg.update);
        return;
      case 'awareness':
        try {
          awarenessProtocol.applyAwarenessUpdate(this.awareness, msg.update, RELAY_ORIGIN);
        } catch (err) {
          this.emit('error', [new CapsyncError('invalid-awareness', 'the relay sent an awareness update that does not decode', { cause: err })]);
        }
        return;
      case 'ack': {
        this.rekey.acked();
        const durable = this.outbox.ack(msg.seq);
        // Store the smaller outbox soon: a crash must not bring acknowledged updates back as pending.
        this.replica.schedule();
        // Other tabs' updates this tab sent for them (takeover) are durable too: tell them.
        while (this.takenOver.length > 0 && this.takenOver[0]!.seq <= msg.seq) durable.push(...this.takenOver.shift()!.entries);
        if (durable.length > 0) this.crossTab?.post({ type: 'durable', from: this.settings.sessionId, entries: durable });
        return;
      }
      case 'error':
        this.emit('error', [new CapsyncError(msg.code, msg.message)]);
        return;
      case 'auth-denied':
        this.emit('error', [new AuthError('forbidden', msg.reason)]);
        return;
      case 'cp-reply':
        this.cp.onReply(msg);
        return;
      case 'quorum-ack':
        for (const w of this.quorumWaiters) {
          if (w.connection === this.connection && w.seq <= msg.seq) {
            this.quorumWaiters.delete(w);
            w.resolve();
          }
        }
        return;
      default:
        // hello, pong: the link already used them as signs of life.
        return;
    }
  }

  private applyRemote(update: Uint8Array): void {
    try {
      Y.applyUpdate(this.doc, update, RELAY_ORIGIN);
    } catch (err) {
      this.emit('error', [new CapsyncError('invalid-update', 'an update from the relay could not be applied', { cause: err })]);
    }
  }

  // ---- other tabs ----

  private onCrossTab(msg: CrossTabMessage): void {
    if (this.closed) return;
    const self = this.settings.sessionId;
    switch (msg.type) {
      case 'update':
        this.applyFromTab(msg.update);
        for (const id of msg.entries) this.foreign.set(id, { update: msg.update, at: Date.now() });
        this.scheduleTakeover();
        return;
      case 'durable':
        for (const id of msg.entries) this.foreign.delete(id);
        this.outbox.markDurable(msg.entries);
        return;
      case 'awareness':
        try {
          awarenessProtocol.applyAwarenessUpdate(this.awareness, msg.update, CROSS_TAB_ORIGIN);
        } catch {
          // A tab of another version; ignore its presence.
        }
        return;
      case 'sync-step-1': {
        const update = Y.encodeStateAsUpdate(this.doc, msg.stateVector);
        this.crossTab?.post({ type: 'sync-step-2', from: self, to: msg.from, update });
        if (this.awareness.getLocalState() !== null) {
          this.crossTab?.post({ type: 'awareness', from: self, update: awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.awareness.clientID]) });
        }
        return;
      }
      case 'sync-step-2':
        if (msg.to === self) this.applyFromTab(msg.update);
        return;
    }
  }

  private applyFromTab(update: Uint8Array): void {
    try {
      Y.applyUpdate(this.doc, update, CROSS_TAB_ORIGIN);
    } catch (err) {
      this.emit('error', [new CapsyncError('invalid-update', 'an update from another tab could not be applied', { cause: err })]);
    }
  }

  /**
   * Another tab normally sends its own updates and reports them durable. If it does not
   * within `takeoverMs` (closed, crashed, cut off), this tab sends them: they must not wait
   * for the next reconnect.
   */
  private scheduleTakeover(): void {
    if (this.takeoverTimer || this.foreign.size === 0) return;
    this.takeoverTimer = setTimeout(() => {
      this.takeoverTimer = null;
      const cutoff = Date.now() - this.settings.takeoverMs;
      const stale = new Set<Uint8Array>();
      const entries: string[] = [];
      for (const [id, f] of this.foreign) {
        if (f.at <= cutoff) {
          stale.add(f.update);
          entries.push(id);
          this.foreign.delete(id);
        }
      }
      // Offline: nothing to do, the next connection's sync step 2 carries them anyway.
      if (stale.size > 0 && this.sendDoc({ type: 'update', update: Y.mergeUpdates([...stale]) })) {
        this.takenOver.push({ seq: this.seq, entries });
      }
      this.scheduleTakeover();
    }, this.settings.takeoverMs);
  }

  // ---- status ----

  private updateStatus(): void {
    if (this.closed) return;
    const next = syncStatus(this.link.state, this.caughtUp, this.outbox.pending);
    if (next === this.statusValue) return;
    this.statusValue = next;
    this.emit('status', [next]);
  }

  private assertOpen(): void {
    if (this.closed) throw new CapsyncError('internal', `document "${this.name}" is closed`);
  }
}

/** Races `promise` against a deadline; the deadline rejects with UnavailableError. */
function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UnavailableError(message())), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
