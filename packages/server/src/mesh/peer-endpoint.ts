import { EventEmitter } from 'node:events';
import { CapsyncError, CloseCode, Dialer, MUX_CAPABILITY, MUX_CONTROL_FRAMING, MUX_PATH, relayIdOf, type DialedChannel, type HelloMessage, type SessionChannel } from '@capsync/core';
import { redactUrl } from '../auth/url-token.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import { OutboundTransport } from '../relay/outbound-transport.js';
import type { SendBufferOptions } from '../relay/send-buffer.js';
import { MESH_PATH } from './mesh-connection.js';
import { PeerMuxSocket, type PeerMuxSocketDeps } from './peer-mux-socket.js';
import { RELAY_QUERY, relayHello } from './peer-socket.js';

export interface PeerEndpointOptions {
  /** This relay's id. */
  relayId: string;
  /** The relay credential, fetched before every connect. */
  credential: () => Promise<string | undefined>;
  logger: Logger;
  metrics: RelayMetrics;
  /** A ping goes out this often; no pong within the same time marks the peer down. */
  heartbeatMs: number;
  backoff: { baseMs: number; maxMs: number };
  /** Dial the peer's multiplexed endpoint (`--mux on`); off: the control link and a socket per document, as before P5. */
  mux: boolean;
  /** The socket's send-buffer bounds (see SendBuffer). */
  outbound: SendBufferOptions;
  /** What the sessions the peer opens on our socket are served with (see PeerMuxSocket). */
  socket: Omit<PeerMuxSocketDeps, 'ended' | 'helloed' | 'relayId' | 'metrics' | 'logger'>;
  /** The socket peer relay `id` dialled to this relay and that said hello, if one is open (see `offer`). */
  inboundSocket(id: string): PeerMuxSocket | undefined;
}

export interface PeerEndpointEvents {
  /** The link is up and the peer said who it is. */
  up: [];
  /** The link is gone (closed, refused, or silent past the heartbeat). */
  down: [reason: string];
  /** The peer refused the link with a capsync close code (a bad relay credential: 4401/4403). */
  refused: [code: number, reason: string];
}

/**
 * One peer relay as this relay sees it: the one link to it, dialled through core's Dialer (a
 * fresh relay credential per attempt, the handshake timeout, `ws` ping liveness, the one
 * Backoff), which says whether the peer is reachable (partition events, once per peer) and who
 * it is (its relay id, from its hello).
 *
 * The link is the peer's multiplexed endpoint (`/.capsync/mux`): one socket that carries every
 * document this relay shares with the peer, one session each (PeerMuxSocket), and the link's
 * own traffic on its control session. A peer without it (an older relay in a rolling upgrade,
 * or one run with `--mux off`) closes that upgrade with 4404, or does not announce `mux`: then
 * the link is the mesh control endpoint (`/.capsync/mesh`) and each document dials a socket of
 * its own (PeerLink), as before. Every time such a link ends, the next attempt asks for the
 * multiplexed endpoint again, so a peer upgraded and restarted is found.
 */
export class PeerEndpoint extends EventEmitter<PeerEndpointEvents> {
  /** The peer's relay id, once it told us. */
  id: string | undefined;
  /** `url` as logs show it (a token or password in it redacted). */
  readonly logUrl: string;
  private dialer: Dialer | null = null;
  /** Which endpoint of the peer the dialer asks for. */
  private mode: 'mux' | 'mesh';
  /** The multiplexed socket this relay dialled (mux mode, while open). */
  private dialled: PeerMuxSocket | null = null;
  /** The socket the peer dialled to this relay, adopted as the pair's one (see `offer`), while it lasts. */
  private adopted: PeerMuxSocket | null = null;
  /** Pings the adopted socket (its liveness; the dialled one has the Dialer's). */
  private watch: NodeJS.Timeout | null = null;
  /** The transport of the attempt under way (its accounting is the socket's). */
  private transport: OutboundTransport | null = null;
  private upValue = false;
  private closed = false;

  constructor(
    readonly url: string,
    private readonly options: PeerEndpointOptions,
  ) {
    super();
    this.logUrl = redactUrl(url);
    this.mode = options.mux ? 'mux' : 'mesh';
  }

  get up(): boolean {
    return this.upValue;
  }

  /** True while the link is a multiplexed socket: documents open sessions on it (`openDoc`), not sockets. */
  get multiplexed(): boolean {
    return this.socket?.usable ?? false;
  }

  /** True while the link is the socket the peer dialled (ours was the duplicate; see `offer`). */
  get onPeersSocket(): boolean {
    return this.adopted !== null;
  }

  /** The pair's socket: the peer's when adopted, else ours. */
  private get socket(): PeerMuxSocket | null {
    return this.adopted ?? this.dialled;
  }

  /** True while documents dial a socket each (the peer has no multiplexed endpoint). */
  get socketPerDocument(): boolean {
    return this.mode === 'mesh' && !this.adopted;
  }

  /**
   * A socket the peer dialled to this relay said hello. One socket per pair: when both relays
   * dialled, the socket dialled by the smaller relay id stays. If that is the peer's, this
   * relay adopts it: its own socket closes with 1000 'duplicate link', its dialer rests while
   * the peer's socket lasts (`withdraw` starts it again), and every document link moves over
   * (the endpoint goes down and up: the links resync, which state vectors make cheap). A newer
   * socket from the peer replaces an adopted one (the peer dialled again: it saw the old one
   * die). Returns true if it adopted `socket`.
   */
  offer(socket: PeerMuxSocket): boolean {
    if (this.closed || !this.options.mux || this.adopted === socket || !socket.usable) return false;
    if (this.id === undefined || socket.peerId !== this.id || !(socket.peerId < this.options.relayId)) return false;
    const old = this.adopted;
    this.setUp(false, 'moving to the socket the peer dialled (one socket per pair)');
    this.adopted = socket;
    old?.close(CloseCode.Normal, 'duplicate link');
    this.dialer?.stop('duplicate link');
    this.dialled = null;
    this.watchAdopted(socket);
    this.setUp(true, '');
    return true;
  }

  /** A socket the peer dialled to this relay ended: if it was the pair's, dial again. */
  withdraw(socket: PeerMuxSocket): void {
    if (this.adopted !== socket) return;
    this.adopted = null;
    this.stopWatch();
    this.setUp(false, `the peer's socket closed`);
    if (!this.closed) this.dialer?.start();
  }

  /** Pings the adopted socket every heartbeat; one silent for two is closed (4408) and withdrawn. */
  private watchAdopted(socket: PeerMuxSocket): void {
    this.stopWatch();
    const { heartbeatMs } = this.options;
    socket.lastHeard = performance.now();
    this.watch = setInterval(() => {
      if (performance.now() - socket.lastHeard > 2 * heartbeatMs) {
        this.options.logger.info({ peer: this.logUrl }, 'peer did not answer the heartbeat');
        socket.fail(new CapsyncError('connection-timeout', 'the peer relay did not answer the heartbeat'));
        return;
      }
      socket.ping();
    }, heartbeatMs);
    this.watch.unref();
  }

  private stopWatch(): void {
    if (this.watch) clearInterval(this.watch);
    this.watch = null;
  }

  /** Opens a document's session on the multiplexed socket; null unless `multiplexed`. */
  openDoc(docName: string): SessionChannel | null {
    return this.socket?.openDoc(docName) ?? null;
  }

  /** The relay credential for a new link to this peer. */
  credential(): Promise<string | undefined> {
    return this.options.credential();
  }

  start(): void {
    if (this.closed || this.dialer) return;
    this.dialer = this.newDialer();
    this.dialer.start();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopWatch();
    this.dialer?.destroy('relay shutting down');
    this.dialer = null;
    this.adopted = null;
    this.setUp(false, 'relay shutting down');
  }

  private newDialer(): Dialer {
    const { relayId, heartbeatMs, logger } = this.options;
    const mode = this.mode;
    let lastClose: { code: number; opened: boolean } | null = null;
    // No mux endpoint there: an older relay takes `.capsync/mux` for a reserved document name (4404).
    const noMux = () => mode === 'mux' && lastClose !== null && !lastClose.opened && lastClose.code === CloseCode.InvalidDocName;
    const dialer = new Dialer({
      urls: [this.url],
      path: `${mode === 'mux' ? MUX_PATH : MESH_PATH}?${RELAY_QUERY}=${encodeURIComponent(relayId)}`,
      credential: () => this.options.credential(),
      connect: (url, protocols, opened) => (this.transport = new OutboundTransport(url, protocols, opened, {
        outbound: this.options.outbound,
        bytesIn: (n) => this.options.metrics.peerBytesIn.inc(n),
        error: (err) => logger.debug({ peer: this.logUrl, err: err.message }, 'peer link error'),
      })),
      backoff: this.options.backoff,
      liveness: { kind: 'transport-ping', intervalMs: heartbeatMs, timeoutMs: heartbeatMs },
      handshakeTimeoutMs: heartbeatMs * 2,
      hello: relayHello(relayId),
      expectHello: (hello) => this.checkHello(hello, mode),
      control: mode === 'mux' ? MUX_CONTROL_FRAMING : undefined,
      retryUnauthorized: true,
      minDelayAfter: { [CloseCode.SlowConsumer]: 1000 },
      // A relay keeps dialling its peers whatever they answer (its configuration says they are
      // its peers); an incompatible protocol version is retried slowly, until one is upgraded.
      refusalAction: (code) => (noMux() ? 'handled' : code === CloseCode.ProtocolVersion ? 'retry-slowly' : 'retry'),
      unrefTimers: true,
    });
    dialer.on('open', ({ channel, hello }) => this.opened(channel, hello!, mode));
    dialer.on('close', (info) => {
      lastClose = info;
      if (this.closed || this.dialer !== dialer) return;
      this.dialled = null;
      if (info.code >= 4000 && !noMux()) {
        logger.warn({ peer: this.logUrl, code: info.code, reason: info.reason }, 'peer refused the link');
        this.emit('refused', info.code, info.reason);
      }
      // Our socket was the duplicate (`offer`): the link goes on over the peer's.
      if (this.adopted) return;
      this.setUp(false, `closed ${info.code} ${info.reason}`.trim());
      if (noMux()) {
        logger.info({ peer: this.logUrl }, 'peer relay has no multiplexed endpoint: a socket per document');
        this.switchTo('mesh');
      } else if (mode === 'mesh' && info.opened && this.options.mux) {
        // It may have been upgraded meanwhile: ask for the multiplexed endpoint first again.
        this.switchTo('mux');
      }
    });
    dialer.on('error', (err) => {
      if (!noMux()) logger.debug({ peer: this.logUrl, code: err.code, err: err.message }, 'peer link refused or failed');
    });
    return dialer;
  }

  /** Replaces the dialer with one for the other endpoint of the peer, dialling now. */
  private switchTo(mode: 'mux' | 'mesh'): void {
    this.dialer?.destroy(mode === 'mesh' ? 'no multiplexed endpoint' : 'probing the multiplexed endpoint');
    this.mode = mode;
    this.dialer = this.newDialer();
    this.dialer.start();
  }

  /** Why the peer's hello does not do for a link (null: it does). */
  private checkHello(hello: HelloMessage, mode: 'mux' | 'mesh'): CapsyncError | null {
    if (!relayIdOf(hello)) return new CapsyncError('bad-message', 'the peer did not say which relay it is');
    // Upgraded /.capsync/mux without saying it serves it: not a multiplexed endpoint we can use.
    if (mode === 'mux' && !hello.capabilities.includes(MUX_CAPABILITY)) return new CapsyncError('invalid-doc-name', 'the peer does not announce the multiplexed endpoint');
    return null;
  }

  private opened(channel: DialedChannel, hello: HelloMessage, mode: 'mux' | 'mesh'): void {
    const id = relayIdOf(hello)!;
    if (this.id !== undefined && this.id !== id) this.options.logger.warn({ peer: this.logUrl, was: this.id, now: id }, 'peer relay changed its id');
    this.id = id;
    if (mode === 'mux') {
      // The peer's socket to us is already there: if it is the pair's one, ours closes at once.
      const theirs = this.options.inboundSocket(id);
      if (theirs && this.offer(theirs)) return;
      const { relayId, metrics, logger } = this.options;
      this.dialled = new PeerMuxSocket(channel, this.transport!.accounted, true, id, hello, { ...this.options.socket, relayId, metrics, logger });
    } else {
      // The mesh control link carries nothing after the hellos: liveness is `ws` pings.
      channel.attach({ message: () => {}, close: () => {}, error: () => {} });
    }
    // The link works: the next failure starts from a short delay.
    this.dialer?.healthy();
    this.setUp(true, '');
  }

  private setUp(up: boolean, reason: string): void {
    if (this.upValue === up) return;
    this.upValue = up;
    if (up) this.emit('up');
    else this.emit('down', reason);
  }
}
