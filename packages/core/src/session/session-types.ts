import type * as Y from 'yjs';
import type { CapsyncError } from '../errors.js';
import type { HelloMessage, Message } from '../protocol/message-types.js';

/**
 * What a DocSession needs of the replica it syncs (on the relay: RelayDoc, which fits this
 * shape as it is, so no adapter object sits between a session and its document).
 */
export interface SessionReplica {
  /** The document: state vectors and ack entries are read from it (it may be replaced on a reload). */
  readonly doc: Y.Doc;
  /** True while input must wait (loading, recovering, a fenced commit); the host calls `DocSession.resume` afterwards. */
  readonly paused: boolean;
  /** What a replica at `stateVector` lacks. May throw when the state vector does not decode. */
  encodeState(stateVector: Uint8Array): Uint8Array;
  /**
   * Optional: the same as updates that give it when applied in order, so a replica that keeps
   * its state that way need not encode it whole. The session sends all but the last as
   * updates, then the step 2 with the last. May throw like `encodeState`.
   * An empty list says the replica holds nothing at all (a client's fresh replica): no step 2
   * is sent (it would be an empty update, which the other side stores as a barrier and acks),
   * and `sentStep2` hears 0. Only for a side whose step 2 nobody waits for: the relay's answer
   * is what tells a client it is synced, so a relay always answers.
   */
  stateUpdates?(stateVector: Uint8Array): readonly Uint8Array[];
  /** Resolves once every write applied so far (from any link) is committed: what a barrier waits for. */
  whenWritesSettled(): Promise<void>;
  /** The replica's awareness; `encode` gives its full state, null when empty. */
  readonly awareness: { encode(): Uint8Array | null };
}

/** The outcome of one received document update the host applied (see SessionHooks.applyUpdate). */
export interface AppliedUpdate {
  /** Resolves once it is committed; a rejection closes the session (see DocSession). */
  durable: Promise<void>;
  /** The client ids it wrote under: their state vector entries go in its ack. */
  clients: number[];
}

/**
 * What the host of a session does for it: the role-specific reactions. The session calls
 * them from its message handler, so a hook may throw a CapsyncError to close the session
 * with that error's code (where noted); any other throw closes it with `internal`.
 * Hooks are methods of one host object (no closures per session or per message).
 */
export interface SessionHooks {
  /**
   * The other side's hello, its protocol version already checked (one per session: a second
   * one closes it). Returns our hello, sent as the answer, or null when there is nothing to
   * answer (we spoke first: `SessionOptions.hello`). May throw.
   */
  hello(msg: HelloMessage): HelloMessage | null;
  /**
   * A received non-empty document message (sync step 2 or update), number `seq`: validate,
   * then apply. Returns how it commits, or null when it was refused without closing (the
   * host told the other side; nothing is acknowledged). May throw to close.
   */
  applyUpdate(update: Uint8Array, seq: number): AppliedUpdate | null;
  /** A received empty update (a barrier), number `seq`: its ack is the session's; this is for more (quorum). */
  barrier(seq: number): void;
  /** A received awareness update. May throw. */
  awareness(update: Uint8Array): void;
  /**
   * Any message the session does not handle itself (cp-set, client-owners, messages the role
   * does not accept...). Throws a ProtocolError for the ones its role refuses.
   */
  extension(msg: Message): void;
  /**
   * The other side acknowledged our numbered messages 1..`seq`, which cover the document up to
   * position `position` (see numberSent).
   */
  acked(position: number, seq: number): void;
  /** The document position a numbered message sent now stands for (see numberSent). */
  position(): number;
  /** Sent before every sync step 2 answer (a relay sends its client id claims to a peer first). */
  beforeStep2(): void;
  /**
   * Our sync step 2 answer went out as numbered message `seq` (with numberSent; a peer link's
   * convergence, a client's outbox); 0 when there was nothing to send (see `stateUpdates`).
   */
  sentStep2?(seq: number): void;
  /**
   * The other side's sync step 2 number `round` (counted from 1 per session) was handled: the
   * answer to our step 1 of that round (see DocSession.requestSync; a client's whenSynced).
   */
  synced?(round: number): void;
  /** A received message was decoded (metrics). */
  messageIn(type: Message['type']): void;
  /** A message was handed to the channel (metrics). */
  messageOut(type: Message['type'], bytes: number): void;
  /**
   * A document message (`kind`) received at `receivedAt` (performance.now()) became durable, in
   * order, an empty one (a barrier) included: metrics, and a peer link's convergence.
   */
  durable(receivedAt: number, kind: 'sync-step-2' | 'update'): void;
  /** The session is closing because of `err` (before it closes: metrics, logs). */
  failing(err: CapsyncError): void;
  /** An unexpected (non-CapsyncError) failure: a bug or a storage error; logged by the host. */
  unexpected(err: unknown, what: 'message' | 'commit'): void;
  /**
   * The session ended, once: `byUs` holds the code and reason when we closed it (`close`/`fail`),
   * null when the channel closed (the other side, or the transport).
   */
  ended(byUs: { code: number; reason: string } | null): void;
}

/** How a session behaves; fixed for its life. */
export interface SessionOptions {
  /** Bytes of input held while the replica is missing or paused; past it the session fails (slow-consumer). */
  maxQueuedBytes: number;
  /**
   * This side speaks first (it dialled a peer relay): our hello, sent on `open` before sync
   * step 1. The other side speaks the extensions from then on (it gets acks), and its hello is
   * the answer (checked; the host's `hello` returns null). Absent: the other side speaks
   * first, and one that never does (a stock y-websocket client) gets no extension message.
   */
  hello?: HelloMessage | undefined;
  /**
   * Number the document messages we send and take `ack`s for them (a link to a peer relay,
   * which acknowledges what it stores). Otherwise an `ack` goes to `extension`.
   */
  numberSent: boolean;
  /**
   * Acknowledge the document messages received, once durable, to a side that speaks the
   * extensions. Default true (a relay, which stores what it receives); false for a client,
   * whose replica is not the durable copy (a relay refuses an ack from a client).
   */
  ackReceived?: boolean | undefined;
  /**
   * The channel's share of a send budget: full-state answers (step 2 and each piece before it,
   * awareness) wait while it has no room (see CoalescedReply, InTurn). Absent: always room.
   */
  room?: { hasRoom(wake: () => void): boolean } | undefined;
}
