import {
  QuietObservable,
  Backoff,
  CloseCode,
  LOCKS_CAPABILITY,
  defaultRefusalAction,
  encodeMessage,
  refusalFor,
  CapsyncError,
  HeldEvents,
  type Channel,
  type ChannelHandler,
  type Message,
  type SessionChannel,
} from '@capsync/core';
import { RelayLink, type LinkState, type RelayLinkEvents, type RelayLinkOptions } from './relay-link.js';
import type { RelaySocket, RelaySockets, SocketUser } from './relay-socket.js';
import { LocalOnlyLink, unsupportedSubdoc } from './subdocs.js';

/**
 * What a document handle needs of its link to the relay: a RelayLink (a socket of its own) or
 * a SessionLink (a session on the client's shared socket); the contract is RelayLink's.
 */
export type DocLink = Pick<RelayLink, 'state' | 'currentUrl' | 'start' | 'stop' | 'send' | 'healthy' | 'destroy' | 'on' | 'off'>;

/**
 * A document's link: a session on the client's socket (`sockets`), else a socket of its own. A
 * subdocument never gets one of its own: it would name, and so sync into, its parent.
 */
export function docLinkFor(sockets: RelaySockets | null, options: RelayLinkOptions): DocLink {
  if (sockets) return new SessionLink(sockets, options);
  return options.subdoc === undefined ? new RelayLink(options) : new LocalOnlyLink(options);
}

/**
 * A document's link as one session on the client's multiplexed socket (RelaySocket), with
 * RelayLink's events and contract, so the document cannot tell the two apart:
 * - 'open' when its session-open went out, with the session as the channel (frames follow it
 *   at once; a refusal comes back as the session's close), 'close' when the session ended: closed by the relay, refused, or with
 *   the socket (then with the socket's code). After a socket reconnect the session is opened
 *   again on the new socket, with the document's hello capabilities of that moment.
 * - A session refusal is the same close code a socket of its own would get, and is handled by
 *   the same table (core refusals.ts): reported as a typed 'error', then the session stops
 *   (4403 forbidden, 4404 invalid-doc-name) or is opened again after this document's backoff.
 *   Refusals of the whole socket (a token refused) reach every document as 'error'.
 * - On a client whose relays have no multiplexed endpoint it becomes a RelayLink (fallback);
 *   a subdocument's link (`subdoc`) cannot, and stays offline with an 'unsupported' error.
 * - Kind 'locks' (the lock client's link): the socket's lock session, opened without a name;
 *   its RelayLink fallback goes to the lock endpoint (`options.docName`). A relay whose socket
 *   hello does not say `locks` (one from before lock sessions) gets the fallback too, on the
 *   first socket that opens: the documents stay on the socket, the locks get a socket of their own.
 *   So do locks that find the socket at the relay's session cap (`mux-sessions:<n>`, its
 *   documents holding every session): else they would wait for a document to close.
 */
export class SessionLink extends QuietObservable<RelayLinkEvents> implements SocketUser {
  private started = false;
  /** A refusal stopped this session until `start()`. */
  private fatal = false;
  private socket: RelaySocket | null = null;
  private channel: SessionChannel | null = null;
  private retry: ReturnType<typeof setTimeout> | null = null;
  /** Made on the first retry: most links never need one. */
  private backoffValue: Backoff | null = null;
  private connections = 0;
  private fallback: RelayLink | null = null;
  /** A subdocument's link on relays without the multiplexed endpoint: it never connects. */
  private unsupported = false;
  /** This document was told (an error) that it waits at the socket's session cap. */
  private toldWaiting = false;

  constructor(
    private readonly sockets: RelaySockets,
    /** `docName`: the document (kind 'doc'), or the lock endpoint's path (kind 'locks': its fallback). */
    private readonly options: RelayLinkOptions,
    /** What the session serves: a document, or the lock protocol. */
    private readonly kind: 'doc' | 'locks' = 'doc',
  ) {
    super();
  }

  private get backoff(): Backoff {
    return (this.backoffValue ??= new Backoff(this.options.backoff, this.options.random ?? (() => Math.random())));
  }

  get state(): LinkState {
    if (this.fallback) return this.fallback.state;
    if (this.channel) return 'open';
    if (!this.started || this.fatal || !this.socket) return 'offline';
    return this.socket.state === 'open' ? 'connecting' : this.socket.state;
  }

  get currentUrl(): string {
    // Not started: where the first attempt goes (asking the pool would make a socket, or throw once the client closed).
    return this.fallback?.currentUrl ?? this.socket?.currentUrl ?? this.options.urls[0]!;
  }

  start(): void {
    if (this.fallback) return this.fallback.start();
    if (this.unsupported) return;
    this.started = true;
    this.fatal = false;
    this.cancelRetry();
    this.socket ??= this.sockets.get();
    this.socket.use(this);
    this.emit('state', [this.state]);
  }

  stop(): void {
    if (this.fallback) return this.fallback.stop();
    this.started = false;
    this.release(CloseCode.Normal, 'client disconnected');
    this.emit('state', [this.state]);
  }

  send(msg: Message): boolean {
    if (this.fallback) return this.fallback.send(msg);
    if (!this.channel) return false;
    this.channel.send(encodeMessage(msg));
    return true;
  }

  healthy(): void {
    this.backoffValue?.reset();
    this.socket?.healthy();
    this.fallback?.healthy();
  }

  override destroy(): void {
    this.started = false;
    this.release(CloseCode.Normal, 'client closed');
    this.fallback?.destroy();
    super.destroy();
  }

  // ---- SocketUser ----

  socketOpen(): void {
    if (!this.started || this.fatal || this.channel || this.retry || !this.socket) return;
    const socket = this.socket;
    if (this.kind === 'locks' && socket.connected && !socket.serves(LOCKS_CAPABILITY)) return this.noMux();
    const channel = socket.openSession(
      this.kind === 'locks'
        ? { kind: 'locks', name: '', subdoc: '', capabilities: [] }
        : { kind: 'doc', name: this.options.docName, subdoc: this.options.subdoc ?? '', capabilities: this.options.helloCapabilities?.() ?? [] },
    );
    if (!channel) {
      // The locks do not wait for a document to close: at the cap they would fail 'unavailable'
      // by every request's deadline, the relay up. They take a lock socket of their own, as they
      // did before lock sessions (the documents keep the shared socket).
      if (this.kind === 'locks' && socket.fullAt !== null) return this.noMux();
      return this.waitingAtCap(socket);
    }
    this.toldWaiting = false;
    this.channel = channel;
    const view = new ObservedChannel(channel, (code, reason) => this.sessionClosed(channel, socket, code, reason));
    this.emit('state', ['open']);
    this.emit('open', [++this.connections, socket.currentUrl, view]);
  }

  /** The socket is at the relay's session cap: this document waits for a session to end, and says so once. */
  private waitingAtCap(socket: RelaySocket): void {
    const cap = socket.fullAt;
    if (cap === null || this.toldWaiting) return;
    this.toldWaiting = true;
    const what = this.options.subdoc === undefined ? `"${this.options.docName}"` : `subdocument "${this.options.subdoc}" of "${this.options.docName}"`;
    const err = new CapsyncError('limit-exceeded', `${what} waits for a session: the socket has the relay's ${cap} sessions open (--max-sessions-per-socket); it opens when one ends`);
    // In a task: this may run inside the handle's start, before its listeners are on.
    setTimeout(() => this.emit('error', [err]), 0);
  }

  socketState(): void {
    if (!this.channel && !this.fallback) this.emit('state', [this.state]);
  }

  socketError(err: CapsyncError): void {
    this.emit('error', [err]);
  }

  noMux(): void {
    if (this.fallback || this.unsupported) return;
    const started = this.started;
    this.release(CloseCode.Normal, 'no multiplexed endpoint');
    if (this.options.subdoc !== undefined) {
      this.unsupported = true;
      this.started = false;
      this.emit('state', [this.state]);
      // In a task: this may run inside the handle's start, before its listeners are on.
      setTimeout(() => this.emit('error', [unsupportedSubdoc(this.options)]), 0);
      return;
    }
    const link = new RelayLink(this.options);
    this.fallback = link;
    link.on('state', (s) => this.emit('state', [s]));
    link.on('open', (connection, url, channel) => this.emit('open', [connection, url, channel]));
    link.on('close', (info) => this.emit('close', [info]));
    link.on('error', (err) => this.emit('error', [err]));
    if (started) link.start();
  }

  // ---- the session ----

  private sessionClosed(channel: SessionChannel, socket: RelaySocket, code: number, reason: string): void {
    if (this.channel !== channel) return; // closed by us (release)
    this.channel = null;
    this.afterSessionClosed(socket, code, reason);
    // Last, once this document's own retry (or stop) is set: a document waiting at the cap may open.
    socket.sessionEnded();
  }

  private afterSessionClosed(socket: RelaySocket, code: number, reason: string): void {
    this.emit('state', [this.state]);
    this.emit('close', [{ code, reason }]);
    // With the socket: the socket's Dialer reports and retries; the next socket reopens the session.
    if (!socket.connected || this.socket !== socket || !this.started) return;
    const refusal = refusalFor(code, reason);
    if (refusal) {
      const action = this.options.ownerHandles?.(code, reason)
        ? 'handled'
        : defaultRefusalAction(code, refusal, typeof this.options.token === 'function');
      if (action !== 'handled') this.emit('error', [refusal]);
      if (action === 'stop') {
        this.fatal = true;
        this.emit('state', [this.state]);
        return;
      }
      if (action === 'retry-slowly') this.backoff.saturate();
    }
    this.retry = setTimeout(() => {
      this.retry = null;
      this.socketOpen();
    }, this.backoff.next());
  }

  /** Ends this document's session and its use of the socket. */
  private release(code: number, reason: string): void {
    this.cancelRetry();
    const channel = this.channel;
    this.channel = null;
    const hadSession = channel !== null && !channel.closed;
    channel?.close(code, reason);
    if (hadSession) this.emit('close', [{ code, reason }]);
    const socket = this.socket;
    this.socket = null;
    socket?.unuse(this);
    if (hadSession) socket?.sessionEnded();
  }

  private cancelRetry(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
  }
}

/**
 * A session's channel as its user sees it (the link's 'open'), with the link told of its close
 * (`ended`) right after the user: the user's session is closed by the time the link reacts
 * (reports 'close', retries).
 */
class ObservedChannel implements Channel {
  private readonly events = new HeldEvents();

  constructor(
    private readonly inner: SessionChannel,
    ended: (code: number, reason: string) => void,
  ) {
    inner.attach({
      message: (bytes) => this.events.message(bytes),
      error: (err) => this.events.error(err),
      close: (code, reason) => {
        this.events.close(code, reason);
        ended(code, reason);
      },
    });
  }

  get hello(): SessionChannel['hello'] {
    return this.inner.hello;
  }

  get bufferedAmount(): number {
    return this.inner.bufferedAmount;
  }

  send(bytes: Uint8Array, onWritten?: () => void): void {
    this.inner.send(bytes, onWritten);
  }

  close(code: number, reason: string): void {
    this.inner.close(code, reason);
  }

  terminate(): void {
    this.inner.terminate();
  }

  attach(handler: ChannelHandler): void {
    this.events.attach(handler);
  }
}
