import * as Y from 'yjs';
import {
  AckOrder,
  CapsyncError,
  CoalescedReply,
  InputQueue,
  DurableAcks,
  SentLog,
  ProtocolError,
  checkProtocolVersion,
  declaredWritersOf,
  helloFor,
  relayIdCapability,
  closeCodeFor,
  closeCodeName,
  closeReasonFor,
  decodeMessage,
  encodeMessage,
  isEmptyUpdate,
  CloseCode,
  type ClientClaims,
  type Message,
} from '@capsync/core';
import type { LockService } from '../locks/lock-service.js';
import { ConnectionIdentity } from '../locks/lock-identity.js';
import { fencedSet } from './fenced-set.js';
import type { AccessGrant } from '../auth/access.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { DocRegistry } from './doc-registry.js';
import type { DocPeer, RelayDoc } from './relay-doc.js';
import type { Admission } from './update-admission.js';
import { onCredentialExpiry } from '../auth/credential-expiry.js';
import type { FencedWriteForwarder } from '../mesh/fenced-write-forwarder.js';
import { SendBuffer, type OutboundSocket, type SendBufferOptions } from './send-buffer.js';
import { QuorumBarrier } from './quorum-barrier.js';

/**
 * The part of a WebSocket the relay uses, so the relay core knows nothing of `ws` or http.
 * `bufferedAmount` is the number of bytes queued but not yet sent (see OutboundSocket).
 */
export interface RelaySocket extends OutboundSocket {
  close(code: number, reason: string): void;
  /** Drops the connection at once, without a closing handshake. */
  terminate(): void;
}

export interface ConnectionOptions extends SendBufferOptions {
  /** Bytes of input a connection may queue while its document loads. */
  maxQueuedBytes: number;
}

/** What a connection from a peer relay tells the mesh (see PeerMesh). */
export interface MeshHooks {
  relayId: string;
  inboundOpened(peerId: string, conn: RelayConnection): void;
  inboundClosed(peerId: string, conn: RelayConnection): void;
}

interface ConnectionDeps {
  /** The relay's mesh; peer relays' links are registered there. */
  mesh?: MeshHooks;
  /** Set when another relay is the lock authority: fenced writes are forwarded there. */
  fencedWrites?: FencedWriteForwarder | undefined;
  /** Told when the relay closes a connection (not when the client does). */
  onRelayClose?(conn: RelayConnection, code: number, reason: string): void;
  registry: DocRegistry;
  locks: LockService;
  metrics: RelayMetrics;
  logger: Logger;
  options: ConnectionOptions;
}

/**
 * One client connected to one document. Decodes and validates every frame, applies what it
 * may, acknowledges durable updates (capsync clients only), forwards broadcasts with
 * backpressure, and closes itself with a named code on bad input.
 *
 * Input received before the document finished loading (or while it recovers) is queued in
 * order, so nothing is served from, or applied to, a half-loaded document.
 *
 * Size (about 430 lines, over the project's ~400): it is the server half of the link that
 * issue 12 replaces with one document session shared by relays, peers and clients (see
 * docs/design/document-session.md); splitting it now would be redone there.
 */
export class RelayConnection implements DocPeer {
  readonly kind = 'connection' as const;
  /** True once the client said hello: it gets acks and typed errors. */
  private capsync = false;
  private doc: RelayDoc | null = null;
  private readonly queue: InputQueue;
  private closed = false;
  /** Count of document-carrying messages received (sync step 2 and update). */
  private seq = 0;
  private readonly ackOrder = new AckOrder();
  private readonly acks = new DurableAcks(
    (seq, stateVector) => void this.sendMessage({ type: 'ack', seq, stateVector }),
    () => (this.closed ? null : (this.doc?.doc ?? null)),
  );
  private deniedNotified = false;
  private cancelExpiry: (() => void) | null = null;
  /** Every message sent goes through it (slow consumers are closed, whatever they asked for). */
  readonly outbound: SendBuffer;
  /** Sync step 1 and query-awareness each cost a full-state encoding: coalesced (see CoalescedReply). */
  private readonly step2Replies: CoalescedReply<Uint8Array>;
  /** Made on the first query-awareness: most connections never send one (memory per idle connection). */
  private awarenessReplies: CoalescedReply<null> | null = null;
  /** The client asked for quorum acknowledgements of its barriers. */
  private quorum = false;
  /** The quorum wait of this connection's latest barrier (see QuorumBarrier); made on first use. */
  private quorumBarrier: QuorumBarrier | null = null;
  /**
   * Set when this is a peer relay's document link (relay credential, relay named in the
   * request): its updates are trusted with fenced content, it acknowledges what we send.
   */
  readonly peerRelayId: string | undefined;
  private readonly sentToPeer = new SentLog();
  /** Whose leases this connection's fenced writes use. */
  private readonly identity: ConnectionIdentity;
  /** The client ids its hello declared it writes under (claimed for it; see WRITES_PREFIX). */
  private declaredWriters: Set<number> | undefined;

  constructor(
    private readonly socket: RelaySocket,
    readonly docName: string,
    private readonly grant: AccessGrant,
    private readonly deps: ConnectionDeps,
    peerId?: string,
  ) {
    deps.metrics.connections.inc();
    this.identity = new ConnectionIdentity(grant);
    this.queue = new InputQueue(deps.options.maxQueuedBytes);
    this.outbound = new SendBuffer(socket, deps.options, (err) => this.fail(err));
    this.step2Replies = new CoalescedReply(this.canAnswer, (stateVector, written) => {
      let update: Uint8Array;
      try {
        update = this.doc!.encodeState(stateVector);
      } catch (err) {
        // Possibly answered later, from a write callback: fail here rather than throw.
        this.fail(new ProtocolError('bad-message', 'state vector does not decode', { cause: err }));
        return false;
      }
      // To a peer relay, who owns what it carries goes first (see DocOwnership).
      for (const claims of this.peerRelayId ? this.doc!.claimsForSync() : []) this.sendMessage({ type: 'client-owners', claims });
      return this.sendDocMessage({ type: 'sync-step-2', update }, written);
    }, this.outbound);
    this.peerRelayId = grant.relay && peerId ? peerId : undefined;
    if (this.peerRelayId) deps.mesh?.inboundOpened(this.peerRelayId, this);
    if (grant.expiresAt !== undefined) {
      this.cancelExpiry = onCredentialExpiry(grant.expiresAt, () => this.fail(new CapsyncError('unauthorized', 'token expired')));
    }
    void this.open();
  }


  private async open(): Promise<void> {
    let doc: RelayDoc;
    try {
      doc = await this.deps.registry.acquire(this.docName);
    } catch (err) {
      this.deps.logger.error({ err, doc: this.docName }, 'loading document failed');
      this.fail(new CapsyncError('storage-failure', 'document could not be loaded'));
      return;
    }
    if (this.closed) {
      this.deps.registry.release(this.docName);
      return;
    }
    this.doc = doc;
    doc.peers.add(this);
    if (this.peerRelayId) doc.replication.meet(this.peerRelayId);
    this.sendMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(doc.doc) });
    const awareness = doc.awareness.encode();
    if (awareness) this.sendMessage({ type: 'awareness', update: awareness });
    this.resume();
  }

  /** Feeds one received WebSocket message. */
  receive(data: Uint8Array, isBinary: boolean): void {
    if (this.closed) return;
    this.deps.metrics.bytesIn.inc(data.byteLength);
    if (!isBinary) {
      this.fail(new ProtocolError('text-frame', 'text frames are not supported; send binary frames'));
      return;
    }
    if (!this.doc || this.doc.paused || this.queue.length > 0) {
      if (!this.queue.push(data)) this.fail(new CapsyncError('slow-consumer', 'too much input while the document loads'));
      return;
    }
    this.handle(data);
  }

  private readonly canAnswer = (): boolean => this.doc !== null && !this.doc.paused && !this.closed;

  /** Processes queued input once the document is ready (DocPeer). */
  resume(): void {
    while (this.queue.length > 0 && this.doc && !this.doc.paused && !this.closed) this.handle(this.queue.shift()!);
    this.step2Replies.retry();
    this.awarenessReplies?.retry();
  }

  private handle(frame: Uint8Array): void {
    try {
      const msg = decodeMessage(frame);
      this.deps.metrics.messagesIn.inc({ type: msg.type });
      this.dispatch(msg);
    } catch (err) {
      if (err instanceof CapsyncError) this.fail(err);
      else {
        this.deps.logger.error({ err, doc: this.docName }, 'unexpected error handling a message');
        this.fail(new CapsyncError('internal', 'internal error'));
      }
    }
  }

  private dispatch(msg: Message): void {
    const doc = this.doc!;
    switch (msg.type) {
      case 'sync-step-1': {
        try {
          // Checked now, as the answer may be computed later (coalesced).
          Y.decodeStateVector(msg.stateVector);
        } catch (err) {
          throw new ProtocolError('bad-message', 'state vector does not decode', { cause: err });
        }
        this.step2Replies.request(msg.stateVector);
        return;
      }
      case 'sync-step-2':
      case 'update':
        this.receiveUpdate(msg.update);
        return;
      case 'awareness':
        doc.awareness.apply(msg.update, this, { relay: this.peerRelayId !== undefined, identity: this.identity.lasting, address: this.deps.options.address });
        return;
      case 'query-awareness':
        (this.awarenessReplies ??= new CoalescedReply(this.canAnswer, (_, written) => {
          const update = this.doc!.awareness.encode();
          return update !== null && this.sendMessage({ type: 'awareness', update }, written);
        }, this.outbound)).request(null);
        return;
      case 'hello':
        // One per connection: what it declares (owner key, client ids) must not change mid-connection.
        if (this.capsync) throw new ProtocolError('bad-message', 'a second hello on one connection');
        checkProtocolVersion(msg.protocolVersion);
        this.identity.hello(msg.capabilities);
        this.declaredWriters = declaredWritersOf(msg);
        // Only writers hold ids: a read-only user must not reserve (or push out) anyone's.
        if (this.declaredWriters && this.grant.subject && this.grant.permission === 'write' && !this.peerRelayId) this.doc!.announceWriters(this.grant.subject, this.declaredWriters, this);
        this.capsync = true;
        this.quorum = msg.capabilities.includes('quorum');
        this.sendMessage(this.peerRelayId && this.deps.mesh ? helloFor('relay-to-peer', [relayIdCapability(this.deps.mesh.relayId)]) : helloFor('relay'));
        return;
      case 'ping':
        this.sendMessage({ type: 'pong', id: msg.id });
        return;
      case 'cp-set': {
        const owner = this.identity.actingFor(msg.owner);
        void fencedSet(msg, {
          docName: this.docName,
          permission: this.grant.permission,
          owner,
          current: () => (this.closed ? null : this.doc),
          reply: (code, message) => this.sendMessage({ type: 'cp-reply', id: msg.id, code, message }),
        }, this.deps);
        return;
      }
      case 'lock-request':
        throw new ProtocolError('unknown-message-type', 'lock requests go to the lock endpoint, not a document connection');
      case 'client-owners':
        if (!this.peerRelayId) throw new ProtocolError('unknown-message-type', 'client-owners messages are sent by relays, not clients');
        doc.learnClaims(msg.claims, this); // before the content that follows it
        return;
      case 'ack':
        if (!this.peerRelayId) throw new ProtocolError('unknown-message-type', 'ack messages are sent by relays, not clients');
        // The peer relay committed what we sent it up to this message.
        doc.replication.recordPeerDurable(this.peerRelayId, this.sentToPeer.acked(msg.seq));
        return;
      case 'auth-denied':
      case 'error':
      case 'pong':
      case 'lock-reply':
      case 'cp-reply':
      case 'quorum-ack':
        throw new ProtocolError('unknown-message-type', `${msg.type} messages are sent by relays, not clients`);
    }
  }

  private receiveUpdate(update: Uint8Array): void {
    const seq = ++this.seq;
    const receivedAt = performance.now();
    if (isEmptyUpdate(update)) {
      // Nothing to store, but the ack still promises that everything the relay has applied so
      // far (for example this client's updates sent on an earlier connection, or delivered by
      // another tab) is committed: wait for every pending write of the document.
      this.ackOrder.barrier(this.doc!.whenWritesSettled()).then(() => this.scheduleAck(seq, [], receivedAt), () => {});
      if (this.quorum) (this.quorumBarrier ??= new QuorumBarrier(this.deps.metrics)).await(this.doc!, () => this.sendMessage({ type: 'quorum-ack', seq }));
      return;
    }
    if (this.grant.permission !== 'write') {
      this.refuseReadOnly(seq);
      return;
    }
    const doc = this.doc!;
    let admission: Admission;
    try {
      admission = doc.validate(update, { trusted: this.peerRelayId !== undefined, subject: this.grant.subject, source: this, declared: this.declaredWriters });
    } catch (err) {
      if (err instanceof CapsyncError && err.code === 'fenced-area') this.deps.metrics.fencingRejections.inc({ reason: 'fenced-area' });
      throw err;
    }
    const { durable } = doc.applyRemote(update, this, admission);
    this.deps.metrics.applySeconds.observe((performance.now() - receivedAt) / 1000);
    // An update waiting for dependencies may commit after later ones: ack in order.
    this.ackOrder.update(durable).then(
      () => this.scheduleAck(seq, admission.clients, receivedAt),
      (err: unknown) => {
        if (err instanceof CapsyncError && err.code !== 'storage-failure') return this.fail(err);
        this.deps.logger.error({ err, doc: this.docName }, 'storing an update failed');
        this.fail(new CapsyncError('storage-failure', 'update could not be stored; resend it'));
      },
    );
  }

  private refuseReadOnly(seq: number): void {
    this.deps.metrics.refusals.inc({ reason: 'read-only' });
    if (this.capsync) {
      this.sendMessage({ type: 'error', code: 'read-only', message: `read-only access to "${this.docName}": update refused`, seq });
    } else if (!this.deniedNotified) {
      // Stock y-websocket clients understand y-protocols' permission-denied message.
      this.deniedNotified = true;
      this.sendMessage({ type: 'auth-denied', reason: 'read-only: updates are refused' });
    }
  }

  /** Acks go to capsync clients only, coalesced per turn (DurableAcks). */
  private scheduleAck(seq: number, clients: number[], receivedAt: number): void {
    this.deps.metrics.ackSeconds.observe((performance.now() - receivedAt) / 1000);
    if (this.capsync && !this.closed) this.acks.committed(seq, clients);
  }

  // ---- sending ----

  /** DocPeer: a broadcast update; drops this connection if it cannot keep up. */
  sendUpdate(update: Uint8Array): void {
    this.sendDocMessage({ type: 'update', update });
  }

  /** A message carrying document content; to a peer relay it is numbered for its acks. */
  private sendDocMessage(msg: Extract<Message, { type: 'update' | 'sync-step-2' }>, onWritten?: () => void): boolean {
    if (!this.sendMessage(msg, onWritten)) return false;
    if (this.peerRelayId && this.doc) this.sentToPeer.record(this.doc.replication.applied);
    return true;
  }

  /** DocPeer: a broadcast awareness change. */
  sendAwareness(update: Uint8Array): void {
    this.sendMessage({ type: 'awareness', update });
  }

  /** DocPeer: claims on client ids, to a peer relay (DocOwnership sends them to no one else). */
  sendClaims(claims: ClientClaims[]): void {
    if (this.peerRelayId) this.sendMessage({ type: 'client-owners', claims });
  }

  /**
   * Sends through the send-buffer accounting (backpressure for every message, see SendBuffer).
   * True when sent (then `onWritten` runs once it was written out), false when closed.
   */
  private sendMessage(msg: Message, onWritten?: () => void): boolean {
    if (this.closed || this.outbound.isStopped) return false;
    const bytes = encodeMessage(msg);
    this.deps.metrics.messagesOut.inc({ type: msg.type });
    this.deps.metrics.bytesOut.inc(bytes.byteLength);
    this.outbound.send(bytes, onWritten);
    return true;
  }

  // ---- closing ----

  /** Closes this connection because of `err`, with the matching close code. */
  fail(err: CapsyncError): void {
    if (this.closed) return;
    this.deps.metrics.refusals.inc({ reason: err.code });
    const level = err.code === 'internal' || err.code === 'storage-failure' ? 'error' : 'info';
    this.deps.logger[level]({ doc: this.docName, code: err.code, msg: err.message }, 'closing connection');
    this.close(closeCodeFor(err.code), closeReasonFor(err.code, err.message));
    if (err.code === 'slow-consumer') {
      // Its buffer is full, so the close frame may never get through: do not wait for it.
      setTimeout(() => this.socket.terminate(), 1000).unref();
    }
  }

  /** Closes with a code and reason (the socket's close event then calls `onClosed`). */
  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.closed) return;
    this.deps.metrics.closes.inc({ code: closeCodeName(code) });
    this.cleanup();
    this.socket.close(code, reason);
    this.deps.onRelayClose?.(this, code, reason);
  }

  /** The socket closed (by either side). */
  onClosed(): void {
    this.cleanup();
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    this.deps.metrics.connections.dec();
    this.cancelExpiry?.();
    this.outbound.stop();
    this.queue.clear();
    this.quorumBarrier?.cancel('abandoned');
    if (this.peerRelayId) this.deps.mesh?.inboundClosed(this.peerRelayId, this);
    const doc = this.doc;
    if (doc) {
      doc.peers.delete(this);
      doc.awareness.removeAll(this);
      this.deps.registry.release(this.docName);
    }
  }
}
