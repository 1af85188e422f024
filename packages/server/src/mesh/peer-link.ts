import type { WebSocket } from 'ws';
import * as Y from 'yjs';
import { AckOrder, Backoff, CapsyncError, CloseCode, DurableAcks, InputQueue, SentLog, checkProtocolVersion, decodeMessage, encodeMessage, isEmptyUpdate, type ClientClaims, type Message } from '@capsync/core';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { DocPeer, RelayDoc } from '../relay/relay-doc.js';
import type { PeerEndpoint } from './peer-endpoint.js';
import { openPeerSocket, relayHello } from './peer-socket.js';

/** Least delay before reopening a link dropped because one side could not keep up. */
const SLOW_RECONNECT_MS = 1000;

export interface PeerLinkDeps {
  relayId: string;
  metrics: RelayMetrics;
  logger: Logger;
  /** Bytes the link may have unsent before it is dropped (and resynced on reconnect). */
  sendBufferLimit: number;
  /** Bytes of input the link may queue while its document is paused; past it the link resyncs. */
  maxQueuedBytes: number;
  handshakeTimeoutMs: number;
  /** Reconnect delays after the peer (or the network) closed the link; default 100 ms doubling to 2 s, jittered. */
  backoff?: { baseMs: number; maxMs: number };
}

/**
 * This relay's link to one peer relay for one document: a WebSocket to the peer's document
 * path, speaking the same protocol as a client (hello, sync step 1/2, updates, awareness,
 * acks), authenticated with the relay credential.
 *
 * On every connect both sides send their state vector and answer with what the other lacks,
 * so after a partition only the difference travels. Then it is a peer of the document like a
 * client connection: it gets the document's broadcasts (never its own updates back) and
 * applies what the peer sends. It acknowledges the peer's updates once they are committed
 * here, and turns the peer's acknowledgements into replication positions (quorum, lag).
 *
 * The link connects while its endpoint is up and is dropped when the endpoint goes down; a
 * message that cannot be sent meanwhile is not queued: the next sync step 2 carries it. A
 * connection that ends while the endpoint stays up (the peer closed it: its credential
 * expired, a slow consumer, a storage failure, the peer reloaded the document) is reopened
 * with capped, jittered exponential backoff and a fresh credential, until the link is closed
 * or the endpoint goes down (the mesh reconnects every link when it comes back up).
 */
export class PeerLink implements DocPeer {
  readonly kind = 'connection' as const;
  private socket: WebSocket | null = null;
  private open = false;
  private closed = false;
  private readonly queue: InputQueue;
  private sent = new SentLog();
  private received = 0;
  private ackOrder = new AckOrder();
  private acks = this.newAcks();
  /** Convergence of the current connection: our step 2's number, and what has happened. */
  private round: { openedAt: number; ourStep2: number; step2Acked: boolean; step2Received: boolean; done: boolean } | null = null;
  private readonly convergeWaiters = new Set<() => void>();
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly backoff: Backoff;

  constructor(
    readonly endpoint: PeerEndpoint,
    private readonly doc: RelayDoc,
    private readonly deps: PeerLinkDeps,
  ) {
    this.queue = new InputQueue(deps.maxQueuedBytes);
    const backoff = deps.backoff ?? { baseMs: 100, maxMs: 2000 };
    this.backoff = new Backoff(backoff);
    doc.peers.add(this);
    if (endpoint.id) doc.replication.meet(endpoint.id);
  }

  /** True while the link has an open connection to the peer. */
  get connected(): boolean {
    return this.open;
  }

  /** True once the link was closed for good (`close`). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** The peer's relay id (changes it sends are attributed to it). */
  get peerRelayId(): string | undefined {
    return this.endpoint.id;
  }

  get docName(): string {
    return this.doc.name;
  }

  /** True once, on the current connection, both sides durably hold what the other had when it opened. */
  get converged(): boolean {
    return this.round?.done ?? false;
  }

  /** Resolves when the current (or next) connection has converged; see `converged`. */
  whenConverged(): Promise<void> {
    if (this.converged) return Promise.resolve();
    return new Promise((resolve) => this.convergeWaiters.add(resolve));
  }

  /** Connects if not connected (the endpoint is up), now rather than at a scheduled retry. */
  async connect(): Promise<void> {
    if (this.closed || this.socket) return;
    this.cancelRetry();
    let token: string | undefined;
    try {
      // A fresh credential for every connect: a minted one is short-lived.
      token = await this.endpoint.credential();
    } catch (err) {
      this.deps.logger.error({ err, doc: this.doc.name, peer: this.endpoint.logUrl }, 'minting the relay credential failed');
      this.scheduleReconnect();
      return;
    }
    if (this.closed || this.socket || !this.endpoint.up) return;
    const ws = openPeerSocket(this.endpoint.url, encodeURIComponent(this.doc.name), this.deps.relayId, token, this.deps.handshakeTimeoutMs);
    this.socket = ws;
    ws.on('open', () => {
      if (this.socket !== ws) return;
      this.open = true;
      this.sent = new SentLog();
      this.received = 0;
      this.round = { openedAt: performance.now(), ourStep2: 0, step2Acked: false, step2Received: false, done: false };
      if (this.endpoint.id) this.doc.replication.meet(this.endpoint.id);
      this.send(relayHello(this.deps.relayId));
      this.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(this.doc.doc) });
      const awareness = this.doc.awareness.encode();
      if (awareness) this.send({ type: 'awareness', update: awareness });
    });
    ws.on('message', (data: Buffer) => {
      if (this.socket !== ws) return;
      this.deps.metrics.peerBytesIn.inc(data.byteLength);
      this.receive(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.socket !== ws) return;
      if (code >= 4000) this.deps.logger.warn({ doc: this.doc.name, peer: this.endpoint.logUrl, code, reason: reason.toString() }, 'peer closed the document link');
      this.disconnected();
      // The peer (or the network) ended it while the link is still wanted: open it again
      // (not at once after the peer found us too slow: give it time to catch up).
      this.scheduleReconnect(code === CloseCode.SlowConsumer ? SLOW_RECONNECT_MS : 0);
    });
    ws.on('error', (err) => this.deps.logger.debug({ doc: this.doc.name, peer: this.endpoint.logUrl, err: err.message }, 'document link error'));
  }

  /** Drops the connection and any scheduled reconnect (the endpoint went down); `connect` opens a new one. */
  drop(): void {
    this.cancelRetry();
    const ws = this.socket;
    if (!ws) return;
    this.disconnected();
    ws.terminate();
  }

  /** Drops the connection and opens a new one after a backoff delay, at least `minDelayMs` (a resync). */
  private reconnect(minDelayMs = 0): void {
    this.drop();
    this.scheduleReconnect(minDelayMs);
  }

  /** Ends the link for good (the document unloads, the relay stops, or a duplicate link). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.drop();
    this.doc.peers.delete(this);
    for (const w of this.convergeWaiters) w();
    this.convergeWaiters.clear();
  }

  /**
   * Reconnects after a backoff delay, unless the link is closed, connected, already waiting to
   * reconnect, or its endpoint is down (then the endpoint's next 'up' reconnects it).
   */
  private scheduleReconnect(minDelayMs = 0): void {
    if (this.closed || this.socket || this.retryTimer || !this.endpoint.up) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, Math.max(minDelayMs, this.backoff.next()));
    this.retryTimer.unref();
  }

  private cancelRetry(): void {
    if (!this.retryTimer) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private disconnected(): void {
    this.socket = null;
    this.open = false;
    this.queue.clear();
    // Acks on the next connection count its own messages (an empty one still waits for every
    // pending write of the document), not a failure of this one.
    this.ackOrder = new AckOrder();
    this.acks = this.newAcks();
    this.round = null;
    // Presence learned through this link is unknown now; the peer resends it on reconnect.
    this.doc.awareness.removeAll(this);
  }

  // ---- receiving ----

  private receive(frame: Uint8Array): void {
    if (this.doc.paused || this.queue.length > 0) {
      if (this.queue.push(frame)) return;
      // The document stayed paused past what a link may hold: drop it and resync later
      // (state vectors make the resync cheap; nothing is acknowledged that was not stored).
      this.deps.logger.warn({ doc: this.doc.name, peer: this.endpoint.logUrl }, 'too much input from a peer relay while the document is paused; reconnecting');
      this.deps.metrics.refusals.inc({ reason: 'slow-consumer' });
      this.reconnect();
      return;
    }
    this.handle(frame);
  }

  /** DocPeer: the document resumed after a pause; process what was queued. */
  resume(): void {
    while (this.queue.length > 0 && !this.doc.paused && this.open) this.handle(this.queue.shift()!);
  }

  private handle(frame: Uint8Array): void {
    let msg: Message;
    try {
      msg = decodeMessage(frame);
      this.dispatch(msg);
    } catch (err) {
      const e = err instanceof CapsyncError ? err : new CapsyncError('internal', (err as Error).message);
      // A peer relay sent something this relay refuses: log loudly, resync from scratch.
      this.deps.logger.error({ doc: this.doc.name, peer: this.endpoint.logUrl, code: e.code, msg: e.message }, 'bad message from peer relay; reconnecting');
      this.deps.metrics.refusals.inc({ reason: e.code });
      this.reconnect();
    }
  }

  private dispatch(msg: Message): void {
    switch (msg.type) {
      case 'sync-step-1': {
        const update = this.doc.encodeState(msg.stateVector);
        // Who owns what it carries goes first (see DocOwnership).
        for (const claims of this.doc.claimsForSync()) this.send({ type: 'client-owners', claims });
        const seq = this.sendDoc({ type: 'sync-step-2', update });
        if (this.round && this.round.ourStep2 === 0) this.round.ourStep2 = seq;
        return;
      }
      case 'sync-step-2':
      case 'update': {
        const seq = ++this.received;
        const update = msg.update;
        const ws = this.socket;
        let clients: number[] = [];
        let barrier: Promise<void>;
        if (!isEmptyUpdate(update)) {
          const admission = this.doc.validate(update, { trusted: true, source: this });
          clients = admission.clients;
          const { durable } = this.doc.applyRemote(update, this, admission);
          barrier = this.ackOrder.update(durable);
        } else {
          // Nothing to store, but the ack promises that everything this relay has applied so
          // far is committed (the peer counts us durable through what it had sent), including
          // changes that came from other relays or clients (see AckOrder.barrier).
          barrier = this.ackOrder.barrier(this.doc.whenWritesSettled());
        }
        const round = msg.type === 'sync-step-2' ? this.round : null;
        void barrier.then(
          () => {
            this.scheduleAck(seq, clients);
            // Converged counts what is durable here, not just applied.
            if (round && round === this.round && !round.step2Received) {
              round.step2Received = true;
              this.checkConverged();
            }
          },
          (err: unknown) => {
            this.deps.logger.error({ err, doc: this.doc.name }, 'storing an update from a peer failed; resyncing');
            if (this.socket === ws) this.reconnect();
          },
        );
        return;
      }
      case 'client-owners':
        // Recorded before the content that follows; its ack waits for their commit.
        this.doc.learnClaims(msg.claims, this);
        return;
      case 'awareness': {
        // A peer relay's link relays the presence of its clients (see DocAwareness).
        this.doc.awareness.apply(msg.update, this, { relay: true });
        return;
      }
      case 'ack': {
        const id = this.endpoint.id;
        const docSeq = this.sent.acked(msg.seq);
        if (id && docSeq > 0) this.doc.replication.recordPeerDurable(id, docSeq);
        if (this.round && this.round.ourStep2 > 0 && msg.seq >= this.round.ourStep2 && !this.round.step2Acked) {
          this.round.step2Acked = true;
          this.checkConverged();
        }
        return;
      }
      case 'error':
        this.deps.logger.warn({ doc: this.doc.name, peer: this.endpoint.logUrl, code: msg.code, msg: msg.message }, 'peer relay refused a message');
        return;
      case 'ping':
        this.send({ type: 'pong', id: msg.id });
        return;
      case 'hello':
        // An incompatible peer throws here (ProtocolVersionError): logged, and the link resyncs
        // after a backoff like after any bad input from a peer.
        checkProtocolVersion(msg.protocolVersion);
        return;
      default:
        // pong, query-awareness answers: nothing to do.
        return;
    }
  }

  private checkConverged(): void {
    const r = this.round;
    if (!r || r.done || !r.step2Acked || !r.step2Received) return;
    r.done = true;
    // A connection that got this far is healthy: the next reconnect starts from a short delay.
    this.backoff.reset();
    this.deps.metrics.peerConvergeSeconds.observe((performance.now() - r.openedAt) / 1000);
    for (const w of this.convergeWaiters) w();
    this.convergeWaiters.clear();
  }

  /** Acks are coalesced per turn (DurableAcks), for this connection only. */
  private scheduleAck(seq: number, clients: number[]): void {
    if (this.open) this.acks.committed(seq, clients);
  }

  /** The acks of the current connection: an ack due when it drops is not sent on the next one. */
  private newAcks(): DurableAcks {
    const acks: DurableAcks = new DurableAcks(
      (seq, stateVector) => this.send({ type: 'ack', seq, stateVector }),
      () => (this.open && this.acks === acks ? this.doc.doc : null),
    );
    return acks;
  }

  // ---- sending ----

  /** DocPeer: a broadcast update. */
  sendUpdate(update: Uint8Array): void {
    this.sendDoc({ type: 'update', update });
  }

  /** DocPeer: a broadcast awareness change. */
  sendAwareness(update: Uint8Array): void {
    this.send({ type: 'awareness', update });
  }

  /** DocPeer: claims on client ids, ahead of the content written under them. */
  sendClaims(claims: ClientClaims[]): void {
    this.send({ type: 'client-owners', claims });
  }

  /** Sends a document-carrying message and numbers it (acks refer to these numbers); 0 if not sent. */
  private sendDoc(msg: Extract<Message, { type: 'update' | 'sync-step-2' }>): number {
    if (!this.send(msg)) return 0;
    return this.sent.record(this.doc.replication.applied);
  }

  private send(msg: Message): boolean {
    const ws = this.socket;
    if (!ws || !this.open) return false;
    if (ws.bufferedAmount > this.deps.sendBufferLimit) {
      // The peer cannot keep up: drop and resync later rather than buffer without bound.
      this.deps.logger.warn({ doc: this.doc.name, peer: this.endpoint.logUrl }, 'peer link over its send buffer; resyncing');
      this.reconnect(SLOW_RECONNECT_MS);
      return false;
    }
    const bytes = encodeMessage(msg);
    this.deps.metrics.peerBytesOut.inc(bytes.byteLength);
    ws.send(bytes);
    return true;
  }
}
