import * as Y from 'yjs';
import {
  CapsyncError,
  DocSession,
  type AppliedUpdate,
  type Channel,
  type HelloMessage,
  type Message,
  type SessionHooks,
  type SessionReplica,
} from '@capsync/core';
import { withTimeout } from '../deadline.js';
import type { Outbox, OutboxEntry } from './outbox.js';

/** A Yjs update with nothing in it: the barrier of a quorum flush. */
const EMPTY_UPDATE = new Uint8Array([0, 0]);
const SETTLED = Promise.resolve();
/** The waiter set of a DocSync nobody waited on yet: always empty (replaced before the first add). */
const NO_WAITERS: Set<never> = new Set();

/** A quorum flush waiting for the `quorum-ack` of barrier `seq` sent on `session`. */
interface QuorumWaiter {
  session: DocSession | null;
  seq: number;
  resolve(): void;
  /** The relay refused quorum durability ('quorum-unsupported'). */
  reject(err: CapsyncError): void;
}

/** What a DocSync reports to its document handle. */
export interface DocSyncHooks {
  /** The relay acknowledged messages up to `seq`; `durable` names the local updates that became durable. */
  acked(seq: number, durable: string[]): void;
  /** Local updates of one task, merged, left for the relay (or would have, offline): other tabs get them too. */
  batched(update: Uint8Array, ids: string[]): void;
  /**
   * Applies an update of the relay to the document (origin FROM_RELAY) and stores it; throws
   * what Y.applyUpdate throws. The handle's, so it can store the bytes as received (remote-apply.ts).
   */
  applyRemote(update: Uint8Array): void;
  /** The relay's presence. */
  awareness(update: Uint8Array): void;
  /** A message of the relay that is not the sync's (error, auth-denied, cp-reply, ...). */
  message(msg: Message): void;
  error(err: CapsyncError): void;
  /** The relay answered a sync round: the link works (the next failure starts a new round of relays). */
  healthy(): void;
  /** `caughtUp` changed. */
  changed(): void;
  /** The handle's status now, for deadline messages. */
  status(): string;
}

/** True when `doc` holds no update at all, applied or waiting for missing ones: its sync step 2 would be empty. */
function holdsNothing(doc: Y.Doc): boolean {
  const { store } = doc;
  return store.clients.size === 0 && store.pendingStructs === null && store.pendingDs === null;
}

/**
 * A document's sync with the relay: the client's host of core's DocSession, which does the
 * protocol (sync step 1/2 and its rounds, numbering of the document messages we send, which
 * the relay's acks name). One session per connection (`connect` on each link 'open'): its
 * numbers mean nothing to the next, and `disconnected` marks every pending local update unsent
 * (the next sync step 2 carries it). What is the client's:
 * - local updates go out in batches (one message per task);
 * - acks go to the outbox (pending count, durable ids);
 * - `whenSynced` waits for a fresh sync round of the session (or the next connection's first);
 * - quorum barriers: an empty update sent after this connection's sync step 2, resolved by
 *   the relay's `quorum-ack`.
 * The client acknowledges nothing (its replica is not the durable copy), and an update of the
 * relay that does not apply is reported, not fatal.
 */
export class DocSync implements SessionHooks {
  private session: DocSession | null = null;
  private caughtUpValue = false;
  /** This connection's sync step 2 went out: a barrier sent now covers every local update. */
  private step2Sent = false;
  /** Made on first use (most documents never wait for a quorum): NO_WAITERS until then. */
  private quorumWaiters: Set<QuorumWaiter> = NO_WAITERS;
  private syncWaiters: Set<{ session: DocSession | null; round: number; resolve(): void }> = NO_WAITERS;
  private outgoing: { update: Uint8Array; entry: OutboxEntry; id: string }[] = [];
  private closed = false;
  /** What the session reads: the Y.Doc, never paused (the replica loads before the link starts). */
  private readonly replica: SessionReplica;

  constructor(
    private readonly name: string,
    private readonly doc: Y.Doc,
    private readonly outbox: Outbox,
    private readonly hooks: DocSyncHooks,
  ) {
    this.replica = {
      doc,
      paused: false,
      encodeState: (stateVector) => Y.encodeStateAsUpdate(doc, stateVector),
      // A replica that holds nothing (a document opened for the first time) sends no step 2:
      // it would be an empty update, which the relay stores as a barrier and acknowledges —
      // work on both ends for each of the 1,000 documents a client may open at once. Nothing
      // waits for it: the relay's answer is what makes this replica synced.
      // (An outbox entry whose stored update did not load still goes out with a step 2: sentAll.)
      stateUpdates: (stateVector) => (holdsNothing(doc) && outbox.pending === 0 ? [] : [Y.encodeStateAsUpdate(doc, stateVector)]),
      // Nothing to wait for: the relay sends a client no barrier, and the client acknowledges none.
      whenWritesSettled: () => SETTLED,
      // Our presence goes out through DocPresence (announce), not with the session's opening messages.
      awareness: { encode: () => null },
    };
  }

  /** Caught up with the relay on this connection (its sync step 2 arrived). */
  get caughtUp(): boolean {
    return this.caughtUpValue;
  }

  // ---- connections ----

  /** A link opened (our hello went out): a session on its channel, which starts the first sync round. */
  connect(channel: Channel): void {
    if (this.closed) return;
    this.step2Sent = false;
    this.caughtUpValue = false;
    // The relay's input is handled at once (the replica is never paused): nothing is queued.
    const session = new DocSession(channel, this, { maxQueuedBytes: Number.POSITIVE_INFINITY, numberSent: true, ackReceived: false });
    this.session = session;
    // Waiters from before this connection are answered by its first sync round (open sends its step 1).
    for (const w of this.syncWaiters) {
      if (w.session !== session) {
        w.session = session;
        w.round = 1;
      }
    }
    session.open(this.replica);
  }

  /** The connection is gone: its sequence numbers mean nothing to the next one. */
  disconnected(): void {
    this.session = null;
    this.outbox.resetSent();
    this.caughtUpValue = false;
  }

  /** Sends a message that is not the sync's (presence, cp-set) on this connection; false offline. */
  send(msg: Message): boolean {
    return this.session?.send(msg) ?? false;
  }

  // ---- local updates ----

  /**
   * Queues a local update. Local updates of one task go out together in the next microtask: a
   * keystroke still leaves at once, but a burst (paste, scripted edits, undo of many) is one
   * message, not thousands the relay must validate, store and acknowledge one by one.
   */
  queueLocal(update: Uint8Array, entry: OutboxEntry, id: string): void {
    if (this.outgoing.length === 0) queueMicrotask(this.sendOutgoing);
    this.outgoing.push({ update, entry, id });
  }

  private readonly sendOutgoing = (): void => {
    const batch = this.outgoing;
    this.outgoing = [];
    if (batch.length === 0 || this.closed) return;
    const update = batch.length === 1 ? batch[0]!.update : Y.mergeUpdates(batch.map((b) => b.update));
    // Offline: nothing to send; the next connection's sync step 2 carries these.
    const seq = this.sendNumbered(update);
    if (seq !== null) for (const b of batch) this.outbox.sent(b.entry, seq);
    this.hooks.batched(update, batch.map((b) => b.id));
  };

  /** Sends an update that is not a local one of this tab (another tab's); returns its message seq, or null offline. */
  sendUpdate(update: Uint8Array): number | null {
    return this.sendNumbered(update);
  }

  private sendNumbered(update: Uint8Array): number | null {
    const seq = this.session?.sendNumbered(update) ?? -1;
    return seq > 0 ? seq : null;
  }

  // ---- waiting ----

  /**
   * Quorum durability with a barrier: an empty update sent after this connection's sync step 2
   * (which carries every local update the relay lacked) and after every later local update.
   * The relay answers `quorum-ack` once everything it had applied by then is durable on a
   * majority of its mesh. A new connection (another relay, after failover) gets a new barrier.
   */
  async flushQuorum(timeoutMs: number): Promise<void> {
    // Local updates of this task are still queued for the next microtask: send them first.
    this.sendOutgoing();
    let waiter!: QuorumWaiter;
    const promise = new Promise<void>((resolve, reject) => {
      waiter = { session: null, seq: 0, resolve, reject };
      if (this.quorumWaiters === NO_WAITERS) this.quorumWaiters = new Set();
      this.quorumWaiters.add(waiter);
    });
    this.sendQuorumBarrier();
    await withTimeout(promise, timeoutMs, () => {
      this.quorumWaiters.delete(waiter);
      return `updates of "${this.name}" not durable on a majority of relays within ${timeoutMs} ms (status: ${this.hooks.status()})`;
    });
  }

  /** Sends one barrier for every quorum waiter not yet covered by one on this connection. */
  private sendQuorumBarrier(): void {
    const session = this.session;
    if (!this.step2Sent || !session || this.quorumWaiters.size === 0) return;
    const waiting = Array.from(this.quorumWaiters).filter((w) => w.session !== session);
    if (waiting.length === 0) return;
    const seq = this.sendNumbered(EMPTY_UPDATE);
    if (seq === null) return;
    for (const w of waiting) {
      w.session = session;
      w.seq = seq;
    }
  }

  /**
   * Resolves once this replica holds everything the relay had when this was called (a fresh
   * sync round trip, DocSession.requestSync). Rejects with UnavailableError after `timeoutMs`.
   */
  whenSynced(timeoutMs: number): Promise<void> {
    let waiter!: { session: DocSession | null; round: number; resolve(): void };
    const promise = new Promise<void>((resolve) => {
      waiter = { session: null, round: 0, resolve };
      if (this.syncWaiters === NO_WAITERS) this.syncWaiters = new Set();
      this.syncWaiters.add(waiter);
    });
    // Offline, the next connection's first round answers it.
    const round = this.session?.requestSync() ?? 0;
    if (round > 0) {
      waiter.session = this.session;
      waiter.round = round;
    }
    return withTimeout(promise, timeoutMs, () => {
      this.syncWaiters.delete(waiter);
      return `"${this.name}" not synced with the relay within ${timeoutMs} ms (status: ${this.hooks.status()})`;
    });
  }

  /** The handle closed: nothing is sent any more, and waiters are dropped (their deadlines reject them). */
  close(): void {
    this.closed = true;
    this.syncWaiters.clear();
    this.quorumWaiters.clear();
  }

  // ---- SessionHooks ----

  /** The relay's answer to our hello (the link sent ours); its version was checked. Nothing to answer. */
  hello(_msg: HelloMessage): HelloMessage | null {
    return null;
  }

  applyUpdate(update: Uint8Array): AppliedUpdate | null {
    try {
      this.hooks.applyRemote(update);
    } catch (err) {
      this.hooks.error(new CapsyncError('invalid-update', 'an update from the relay could not be applied', { cause: err }));
    }
    // Not acknowledged (ackReceived: false): nothing to report.
    return null;
  }

  barrier(): void {}

  awareness(update: Uint8Array): void {
    this.hooks.awareness(update);
  }

  extension(msg: Message): void {
    // A relay that cannot give quorum durability says so at once, for the barrier it refused.
    const refused = msg.type === 'error' && msg.code === 'quorum-unsupported';
    if (msg.type !== 'quorum-ack' && !refused) return this.hooks.message(msg);
    for (const w of this.quorumWaiters) {
      if (w.session === this.session && w.seq <= msg.seq) {
        this.quorumWaiters.delete(w);
        if (refused) w.reject(new CapsyncError('quorum-unsupported', msg.message));
        else w.resolve();
      }
    }
  }

  acked(_position: number, seq: number): void {
    this.hooks.acked(seq, this.outbox.ack(seq));
  }

  /** The relay's acks are used by number only (the outbox maps them to updates). */
  position(): number {
    return 0;
  }

  beforeStep2(): void {}

  /**
   * Our sync step 2 carries everything the relay lacks, so every pending update; a barrier may
   * follow it now. `seq` 0: none was needed (the replica holds nothing, so nothing is pending).
   */
  sentStep2(seq: number): void {
    this.outbox.sentAll(seq);
    this.step2Sent = true;
    this.sendQuorumBarrier();
  }

  synced(round: number): void {
    if (!this.caughtUpValue) {
      this.caughtUpValue = true;
      this.hooks.healthy();
    }
    for (const w of this.syncWaiters) {
      if (w.session === this.session && w.round <= round) {
        this.syncWaiters.delete(w);
        w.resolve();
      }
    }
    this.hooks.changed();
  }

  messageIn(): void {}

  messageOut(): void {}

  durable(): void {}

  /** The session closes the link because of `err` (a frame that does not decode: 4400); the link reconnects. */
  failing(err: CapsyncError): void {
    this.hooks.error(err);
  }

  unexpected(err: unknown): void {
    this.hooks.error(new CapsyncError('internal', `the sync of "${this.name}" failed: ${(err as Error)?.message ?? err}`, { cause: err }));
  }

  /** The link reports its close ('close'), which calls `disconnected`. */
  ended(): void {}
}
