import { Backoff, CloseCode, Dialer, type ClientClaims, type DialedChannel, type SessionChannel } from '@capsync/core';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { HostedConnection } from '../relay/hosted-connection.js';
import { OutboundTransport } from '../relay/outbound-transport.js';
import type { DocPeer, RelayDoc } from '../relay/relay-doc.js';
import type { PeerEndpoint } from './peer-endpoint.js';
import { PeerSessionHost } from './peer-session-host.js';
import { RELAY_QUERY, relayHello } from './peer-socket.js';

/** Least delay before reopening a link dropped because one side could not keep up. */
const SLOW_RECONNECT_MS = 1000;

export interface PeerLinkDeps {
  relayId: string;
  metrics: RelayMetrics;
  logger: Logger;
  /**
   * Bytes the link may have unsent for longer than `slowConsumerGraceMs` (or four times it at
   * once) before it is dropped and resynced on a new socket (see SendBuffer).
   */
  sendBufferLimit: number;
  slowConsumerGraceMs: number;
  /** Bytes of input the link may queue while its document is paused; past it the link resyncs. */
  maxQueuedBytes: number;
  handshakeTimeoutMs: number;
  /** Reconnect delays after the peer (or the network) closed the link; default 100 ms doubling to 2 s, jittered. */
  backoff?: { baseMs: number; maxMs: number };
}

/**
 * This relay's link to one peer relay for one document: a session on the pair's multiplexed
 * socket (PeerEndpoint), or, with a peer that has no multiplexed endpoint, a WebSocket of its
 * own to the peer's document path, dialled through core's Dialer (the relay credential per
 * attempt, the handshake timeout, our hello first, the one Backoff). Either carries a
 * DocSession run by a PeerSessionHost (the opening end: our hello first unless the socket said
 * it, sync step 1/2, numbered updates and acks, awareness). The peer's end is the same host
 * behind its RelayConnection.
 *
 * On every connect both sides send their state vector and answer with what the other lacks,
 * so after a partition only the difference travels. Then it is a peer of the document like a
 * client connection: it gets the document's broadcasts (never its own updates back) and
 * applies what the peer sends. Unlike the peer's end it does not hold the document, so a
 * document held only for peers' links can unload (see PeerMesh).
 *
 * The link connects while its endpoint is up and is dropped when the endpoint goes down; a
 * message that cannot be sent meanwhile is not queued: the next sync step 2 carries it. A
 * socket that ends while the endpoint stays up (the peer closed it: its credential expired, a
 * slow consumer, a storage failure, the peer reloaded the document; or we refused what the
 * peer sent, or could not send fast enough) is redialled by its Dialer with the one Backoff
 * (at least 1 s after a slow consumer) and a fresh credential, until the link is closed or
 * the endpoint goes down (the mesh reconnects every link when it comes back up). The
 * endpoint's link watches the peer's liveness: its going down drops every document link.
 * Each socket gets a session of its own: nothing (numbers, acks, queued input) carries over.
 * A session on the shared socket is reopened the same way when the peer closes it (the
 * document refused or failed there) while the endpoint stays up; the socket's end takes the
 * endpoint down, which drops every link.
 */
export class PeerLink implements DocPeer, HostedConnection {
  readonly kind = 'connection' as const;
  /** Dials the socket of its own (a peer without the multiplexed endpoint) while wanted, else null. */
  private dialer: Dialer | null = null;
  /** The current socket of its own, while open. */
  private socket: DialedChannel | null = null;
  /** The current session on the endpoint's multiplexed socket, or null. */
  private session: SessionChannel | null = null;
  /** The session of the current socket, once it opened. */
  private host: PeerSessionHost | null = null;
  /** The current socket's session ended it (we refused the peer's input): not the peer's close to log. */
  private endedByUs = false;
  private closed = false;
  private readonly convergeWaiters = new Set<() => void>();
  /** Reopens a session the peer closed on the shared socket (no dial: the socket stays). */
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly backoff: Backoff;

  constructor(
    readonly endpoint: PeerEndpoint,
    private readonly doc: RelayDoc,
    private readonly deps: PeerLinkDeps,
  ) {
    this.backoff = new Backoff(deps.backoff ?? { baseMs: 100, maxMs: 2000 });
    doc.peers.add(this);
    if (endpoint.id) doc.replication.meet(endpoint.id);
  }

  /** True while the link has an open connection to the peer. */
  get connected(): boolean {
    return this.host !== null;
  }

  /** Opens the document's session on the endpoint's multiplexed socket (the opening end: no hold on the document). */
  private openSession(): void {
    const channel = this.endpoint.openDoc(this.doc.name);
    if (!channel) return;
    this.session = channel;
    const { relayId, metrics, logger, maxQueuedBytes } = this.deps;
    this.host = new PeerSessionHost(this, channel, { relayId, metrics, logger }, { maxQueuedBytes }, { kind: 'dialled', converged: this.onConverged });
    this.host.open(this.doc);
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

  /** HostedConnection: the document, which the link has for its whole life. */
  get document(): RelayDoc {
    return this.doc;
  }

  /** True once, on the current connection, both sides durably hold what the other had when it opened. */
  get converged(): boolean {
    return this.host?.converged ?? false;
  }

  /** Resolves when the current (or next) connection has converged; see `converged`. */
  whenConverged(): Promise<void> {
    if (this.converged) return Promise.resolve();
    return new Promise((resolve) => this.convergeWaiters.add(resolve));
  }

  /** Connects if not connected (the endpoint is up), now rather than at a scheduled retry. */
  async connect(): Promise<void> {
    if (this.closed || this.socket || this.session) return;
    this.cancelRetry();
    if (this.endpoint.multiplexed) return this.openSession();
    // The endpoint's multiplexed socket is not up: its 'up' connects every link (PeerMesh).
    if (!this.endpoint.socketPerDocument || !this.endpoint.up) return;
    // Started again, a dialer waiting out its backoff dials now.
    (this.dialer ??= this.newDialer()).start();
  }

  /** The Dialer of the socket of its own, to the peer's document path. */
  private newDialer(): Dialer {
    const { relayId, metrics, logger, sendBufferLimit, slowConsumerGraceMs, maxQueuedBytes } = this.deps;
    const log = { doc: this.doc.name, peer: this.endpoint.logUrl };
    const dialer = new Dialer({
      urls: [this.endpoint.url],
      path: `${encodeURIComponent(this.doc.name)}?${RELAY_QUERY}=${encodeURIComponent(relayId)}`,
      // A fresh credential for every connect: a minted one is short-lived.
      credential: () =>
        this.endpoint.credential().catch((err: unknown) => {
          logger.error({ err, ...log }, 'minting the relay credential failed');
          throw err;
        }),
      connect: (url, protocols, opened) =>
        new OutboundTransport(url, protocols, opened, {
          outbound: { sendBufferLimit, slowConsumerGraceMs },
          bytesIn: (n) => metrics.peerBytesIn.inc(n),
          error: (err) => logger.debug({ ...log, err: err.message }, 'document link error'),
        }),
      backoff: this.deps.backoff ?? { baseMs: 100, maxMs: 2000 },
      // The endpoint's link watches the peer: when it goes down, PeerMesh drops every link.
      liveness: { kind: 'none' },
      handshakeTimeoutMs: this.deps.handshakeTimeoutMs,
      hello: relayHello(relayId),
      retryUnauthorized: true,
      // Its configuration says the peer is one: the link is redialled whatever the peer answered
      // (not at once after it found us too slow: it is given time to catch up).
      refusalAction: () => 'retry',
      minDelayAfter: { [CloseCode.SlowConsumer]: SLOW_RECONNECT_MS },
      unrefTimers: true,
    });
    dialer.on('open', ({ channel }) => {
      this.socket = channel;
      this.host = new PeerSessionHost(this, channel, { relayId, metrics, logger }, { maxQueuedBytes }, { kind: 'dialled', converged: this.onConverged, helloSaid: true });
      this.host.open(this.doc);
    });
    dialer.on('close', ({ code, reason, opened }) => {
      if (opened && code >= 4000 && !this.endedByUs) logger.warn({ ...log, code, reason }, 'peer closed the document link');
      this.endedByUs = false;
      this.disconnected();
    });
    return dialer;
  }

  /** Drops the connection and any scheduled reconnect (the endpoint went down); `connect` opens a new one. */
  drop(): void {
    this.cancelRetry();
    const session = this.session;
    if (session) {
      this.disconnected();
      // Ends the session alone (the socket and the other documents on it carry on).
      session.terminate();
      return;
    }
    // Dropped at once (the peer is likely unreachable: no closing handshake to wait for); its
    // session ends now, and the dialer rests until `connect`.
    this.socket?.terminate();
    this.dialer?.stop('peer link dropped');
    this.disconnected();
  }

  /** Ends the link for good (the document unloads, the relay stops, or a duplicate link). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.drop();
    this.dialer?.destroy('link closed');
    this.dialer = null;
    this.doc.peers.delete(this);
    for (const w of this.convergeWaiters) w();
    this.convergeWaiters.clear();
  }

  /**
   * HostedConnection: the current socket's session ended. On a socket of its own, the socket
   * ended with it (by us: the session closed it with a named code) and its Dialer dials again
   * (or `drop` stopped it).
   */
  ended(byUs: { code: number; reason: string } | null): void {
    // A session on the endpoint's socket has no socket close to decide for it: the peer closed
    // it (refused the document, failed it, or the socket went), or we did, and it is opened
    // again while the endpoint is up (the socket's end takes the endpoint down first: see PeerEndpoint).
    const session = this.session !== null;
    this.endedByUs = byUs !== null;
    this.disconnected();
    if (session) this.scheduleReconnect(byUs?.code === CloseCode.SlowConsumer ? SLOW_RECONNECT_MS : 0);
  }

  /**
   * Reopens the session on the shared socket after a backoff delay, unless the link is closed,
   * connected, already waiting, or its endpoint is down (then its next 'up' reconnects it).
   */
  private scheduleReconnect(minDelayMs = 0): void {
    if (this.closed || this.socket || this.session || this.retryTimer || !this.endpoint.up) return;
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

  /** Forgets the current socket and its session (idempotent). */
  private disconnected(): void {
    if (!this.socket && !this.session) return;
    this.socket = null;
    this.session = null;
    this.host = null;
    // Presence learned through this link is unknown now; the peer resends it on reconnect.
    this.doc.awareness.removeAll(this);
  }

  private readonly onConverged = (seconds: number): void => {
    // A connection that got this far is healthy: the next reconnect starts from a short delay.
    this.backoff.reset();
    this.dialer?.healthy();
    this.deps.metrics.peerConvergeSeconds.observe(seconds);
    for (const w of this.convergeWaiters) w();
    this.convergeWaiters.clear();
  };

  // ---- DocPeer ----

  /** The document resumed after a pause: the session handles what it queued. */
  resume(): void {
    this.host?.session.resume();
  }

  /** A broadcast update (numbered: the peer's acks count it). */
  sendUpdate(update: Uint8Array): void {
    this.host?.session.sendUpdate(update);
  }

  sendAwareness(update: Uint8Array): void {
    this.host?.session.sendAwareness(update);
  }

  /** Claims on client ids, ahead of the content written under them. */
  sendClaims(claims: ClientClaims[]): void {
    this.host?.session.send({ type: 'client-owners', claims });
  }
}
