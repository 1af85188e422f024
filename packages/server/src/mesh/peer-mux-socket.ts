import {
  CapsyncError,
  CloseCode,
  MuxSessions,
  ProtocolError,
  RELAY_CAPABILITY,
  checkProtocolVersion,
  closeCodeFor,
  closeCodeName,
  closeReasonFor,
  parseSubdocStorageName,
  relayIdOf,
  validateDocName,
  type Channel,
  type HelloMessage,
  type Message,
  type MuxHandler,
  type SessionChannel,
  type SessionOpenMessage,
} from '@capsync/core';
import type { AccessGrant } from '../auth/access.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { AccountedChannel, ServedChannel } from '../relay/accounted-channel.js';
import type { SendBuffer } from '../relay/send-buffer.js';
import { MuxSessionChannel, type MuxServedDoc } from '../mux/mux-session-channel.js';
import { SocketInputQueue } from '../mux/socket-input-queue.js';
import { relayHello } from './peer-socket.js';

export interface PeerMuxSocketDeps {
  /** This relay's id (our answer to the peer's hello names it). */
  relayId: string;
  metrics: RelayMetrics;
  logger: Logger;
  /** Input the peer's sessions may queue together while their documents load (one plain link's bound). */
  maxQueuedBytes: number;
  /** The peer's rights on one document it opens (a subdocument: its parent's; a relay credential's: every document, trusted). */
  grantFor(docName: string): AccessGrant;
  /**
   * Serves a document session the peer opened, with peer trust: a RelayConnection whose
   * PeerSessionHost is the accepting end (it acquires the document: the design's rule that the
   * acceptor's session holds it, the opener's does not).
   */
  serve(channel: ServedChannel, docName: string, grant: AccessGrant, peerId: string): MuxServedDoc;
  /** Once, when the socket ended (either side); its sessions have ended just before. */
  ended?(socket: PeerMuxSocket, code: number, reason: string): void;
  /** The accepting end heard the peer's hello: the socket is usable from here on. */
  helloed?(socket: PeerMuxSocket): void;
}

/** How long a slow consumer's close handshake may take before the socket is dropped. */
const SLOW_CLOSE_MS = 1000;

/**
 * The one multiplexed socket (`/.capsync/mux`, see core's mux-frame.ts) between this relay and
 * one peer relay, either end: every document the two share is a session on it, and its control
 * session carries the link's own traffic (hellos with the relay ids, pings). The socket is the
 * pair's; each side may open sessions on it (the dialling side odd sids, the other even ones).
 *
 * - The side that opens a document's session is the PeerLink end (it does not hold the
 *   document); the side that accepts it serves it as a peer relay's document link
 *   (RelayConnection + PeerSessionHost, accepting end), which holds it. The same split as the
 *   socket-per-document links (PeerMesh), so the mesh's rules carry over unchanged: one link
 *   per document per pair, the smaller relay id's stays when both open at once.
 * - A peer may open a document once per socket (a second open of one it has open: 4400, that
 *   session only). Refused or failing documents get their own `session-close` with the named
 *   code, and every other document carries on.
 * - Relay trust: no per-socket or per-address session cap (a relay credential is the mesh's; the
 *   plain endpoint does not cap a peer's document links either). Input queued while documents
 *   load is bounded per socket (SocketInputQueue), as on a client's multiplexed socket.
 * - What breaks the socket closes it with every session: a malformed frame or control message
 *   (4400), a hello from a relay other than the one the credential names (4403), a slow
 *   consumer (4429: the socket's one SendBuffer), the credential's expiry (4401).
 */
export class PeerMuxSocket implements MuxHandler {
  private readonly sessions: MuxSessions;
  private readonly input: SocketInputQueue;
  /** Documents the peer has open on this socket (one session each). */
  private readonly peerOpen = new Set<string>();
  private closed = false;
  /** When the peer last sent a frame (performance.now()): an adopted socket's liveness (see `ping`). */
  lastHeard = performance.now();
  private pings = 0;

  constructor(
    /** What frames go out through (the Dialer's link channel, or the served socket itself). */
    private readonly link: Channel,
    /** The socket's accounting (its one SendBuffer, shared by every session). */
    private readonly accounted: AccountedChannel,
    /** This relay dialled it. */
    readonly dialled: boolean,
    /** The peer's relay id (from the upgrade's query, or from its hello on the dialled end). */
    readonly peerId: string,
    /** The peer's hello: known on the dialled end (the Dialer waited for it), arrives first on the other. */
    private peerHello: HelloMessage | null,
    private readonly deps: PeerMuxSocketDeps,
  ) {
    this.sessions = new MuxSessions(link, dialled, this);
    this.input = new SocketInputQueue(deps.maxQueuedBytes);
    link.attach({
      message: (frame) => this.receiveFrame(frame),
      // A text frame, or the peer given up on (slow-consumer).
      error: (err) => this.fail(err),
      close: (code, reason) => this.ended(code, reason),
    });
  }

  /** The socket's SendBuffer (the served end's liveness checks it after pings). */
  get outbound(): SendBuffer {
    return this.accounted.outbound;
  }

  /** True once both hellos are in and until the socket ends: sessions may be opened. */
  get usable(): boolean {
    return !this.closed && this.peerHello !== null;
  }

  /** Live sessions, both sides'. */
  get size(): number {
    return this.sessions.size;
  }

  /**
   * Opens this relay's session for `docName` (the PeerLink end): frames may follow at once.
   * Null when the socket cannot take it (not usable, or its sids are used up: then the socket
   * is closed, and a new one starts afresh).
   */
  openDoc(docName: string): SessionChannel | null {
    if (!this.usable) return null;
    try {
      return this.sessions.open({ kind: 'doc', name: docName, subdoc: '', capabilities: [] }, this.peerHello!);
    } catch (err) {
      this.fail(err instanceof CapsyncError ? err : new CapsyncError('internal', (err as Error).message));
      return null;
    }
  }

  /**
   * Asks the peer for a pong on the control session. The relay that adopted a socket the peer
   * dialled (PeerEndpoint) watches it with these, as the dialling end watches it with `ws` pings:
   * both ends notice a partition within a few heartbeats, not at the served socket's idle timeout.
   */
  ping(): void {
    this.sendControl({ type: 'ping', id: ++this.pings });
  }

  /** The served end: feeds one received WebSocket message. */
  receive(data: Uint8Array, isBinary: boolean): void {
    if (this.closed) return;
    this.deps.metrics.bytesIn.inc(data.byteLength);
    this.accounted.received(data, isBinary);
  }

  private receiveFrame(frame: Uint8Array): void {
    this.lastHeard = performance.now();
    try {
      this.sessions.receive(frame);
    } catch (err) {
      if (err instanceof CapsyncError) return this.fail(err);
      this.deps.logger.error({ err, peer: this.peerId }, 'unexpected error handling a frame from a peer relay');
      this.fail(new CapsyncError('internal', 'internal error'));
    }
  }

  // ---- the control session (MuxHandler) ----

  control(msg: Message): void {
    switch (msg.type) {
      case 'hello': {
        // The dialled end's Dialer took the peer's hello; here it is the accepting end's, once, first.
        if (this.dialled || this.peerHello) throw new ProtocolError('bad-message', 'a second hello on one socket');
        checkProtocolVersion(msg.protocolVersion);
        if (!msg.capabilities.includes(RELAY_CAPABILITY)) throw new ProtocolError('bad-message', 'a peer relay socket needs a relay hello');
        const named = relayIdOf(msg);
        if (named !== undefined && named !== this.peerId) throw new CapsyncError('forbidden', `this socket is relay "${this.peerId}"'s, not "${named}"'s`);
        this.peerHello = msg;
        this.sendControl(relayHello(this.deps.relayId));
        this.deps.helloed?.(this);
        return;
      }
      case 'ping':
        this.sendControl({ type: 'pong', id: msg.id });
        return;
      case 'pong':
      case 'session-opened':
        return; // A late pong says nothing; a peer relay's permission is the peer's to enforce.
      case 'error':
        this.deps.logger.warn({ peer: this.peerId, code: msg.code, msg: msg.message }, 'peer relay reported an error on the socket');
        return;
      default:
        throw new ProtocolError('unknown-message-type', `${msg.type} messages are not taken on the control session`);
    }
  }

  open(msg: SessionOpenMessage): void {
    if (!this.peerHello) throw new ProtocolError('bad-message', 'say hello on session 0 before opening sessions');
    let grant: AccessGrant;
    try {
      if (msg.kind !== 'doc' || msg.subdoc !== '') throw new ProtocolError('unknown-message-type', 'a peer relay socket carries document sessions only');
      // A peer replicates a subdocument by its reserved stored name, with its parent's permission
      // (as the plain endpoint takes it from a relay credential); any other name is checked as a client's.
      const subdoc = parseSubdocStorageName(msg.name);
      if (!subdoc) validateDocName(msg.name);
      // One session per document per socket and side: a second would get every broadcast twice.
      if (this.peerOpen.has(msg.name)) throw new ProtocolError('bad-message', `document "${msg.name}" is already open on this socket`);
      grant = this.deps.grantFor(subdoc?.parent ?? msg.name);
    } catch (err) {
      if (!(err instanceof CapsyncError) || err.code === 'unauthorized') throw err;
      this.deps.metrics.refusals.inc({ reason: err.code });
      this.deps.logger.info({ peer: this.peerId, doc: msg.name, code: err.code, msg: err.message }, 'refusing a peer relay session');
      this.sessions.refuse(msg.sid, closeCodeFor(err.code), closeReasonFor(err.code, err.message));
      return;
    }
    const name = msg.name;
    this.peerOpen.add(name);
    const channel = new MuxSessionChannel(msg.sid, this.sessions, this.peerHello, this.accounted, this.input, () => this.peerOpen.delete(name));
    this.sessions.accept(channel);
    this.sendControl({ type: 'session-opened', sid: msg.sid, permission: grant.permission });
    // The socket's credential expiry is watched by its owner, for all its sessions.
    const { expiresAt: _socketWide, ...sessionGrant } = grant;
    channel.serve(this.deps.serve(channel, name, sessionGrant, this.peerId));
  }

  private sendControl(msg: Message): void {
    if (!this.closed) this.sessions.sendControl(msg);
  }

  // ---- closing ----

  /** Closes the socket, and every session on it, because of `err`. */
  fail(err: CapsyncError): void {
    if (this.closed) return;
    this.deps.metrics.refusals.inc({ reason: err.code });
    this.deps.logger[err.code === 'internal' ? 'error' : 'warn']({ peer: this.peerId, sessions: this.sessions.size, code: err.code, msg: err.message }, 'closing the socket of a peer relay');
    this.close(closeCodeFor(err.code), closeReasonFor(err.code, err.message));
    if (err.code === 'slow-consumer') setTimeout(() => this.link.terminate(), SLOW_CLOSE_MS).unref();
  }

  /** Closes the socket with a code and reason (a duplicate socket: 1000; shutdown: 1001). */
  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.closed) return;
    this.deps.metrics.closes.inc({ code: closeCodeName(code) });
    this.link.close(code, reason);
    this.ended(code, reason);
  }

  /** The served end: its WebSocket closed (by either side). */
  onClosed(): void {
    this.accounted.transportClosed();
  }

  /** Once: every session ends with the socket's code, then the owner hears of it. */
  private ended(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.sessions.socketClosed(code, reason);
    this.deps.ended?.(this, code, reason);
  }
}
