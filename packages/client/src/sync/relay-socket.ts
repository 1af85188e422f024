import {
  ChunkAssembler,
  CloseCode,
  Dialer,
  ChunkCredits,
  FLOW_WINDOW_BYTES,
  FairSocket,
  FrameBatch,
  MUX_BATCH_CAPABILITY,
  MUX_FLOW_CAPABILITY,
  MUX_CAPABILITY,
  MUX_CONTROL_FRAMING,
  MUX_PATH,
  MuxSessions,
  OWNER_KEY_PREFIX,
  ProtocolError,
  CapsyncError,
  closeCodeFor,
  closeReasonFor,
  defaultRefusalAction,
  helloFor,
  muxSessionsOf,
  type DialedChannel,
  type Message,
  type MuxHandler,
  type SessionChannel,
  type SessionOpenMessage,
} from '@capsync/core';
import { clientDialerOptions, type RelayLinkOptions } from './relay-link.js';

/** What a RelaySocket tells the documents on it (SessionLink). */
export interface SocketUser {
  /** The socket opened (or reopened, maybe on another relay): open your session now if you want one. */
  socketOpen(): void;
  /** The socket's state changed (connecting, offline): a document without a session shows it. */
  socketState(): void;
  /** A refusal or failure of the whole socket (token refused, bad frame, ...): every document reports it. */
  socketError(err: CapsyncError): void;
  /** Every relay URL refused the multiplexed endpoint (older relays): use a socket per document. */
  noMux(): void;
}

/** The options a RelaySocket shares with every document's link (one client's). */
export type RelaySocketOptions = Omit<RelayLinkOptions, 'docName' | 'ownerHandles' | 'helloCapabilities'>;

/** How long the socket stays open after its last document left (a document reopened at once reuses it). */
export const LINGER_MS = 1_000;

/**
 * One client's multiplexed WebSocket (`/.capsync/mux`, see core's mux-frame.ts) to its relays:
 * every document is a session on it (SessionLink), so a client with 500 documents holds one
 * socket per relay, not 500. The socket is the Dialer's (URL list and failover, a token per
 * attempt, hello once on the control session, app-level heartbeat, backoff, network events);
 * the sessions are core's MuxSessions (sids, routing, session-open/close).
 *
 * - Documents come and go in any socket state: `use` when a document wants to sync, `unuse`
 *   when it stops. A session opened while the socket is down is opened when it comes up; after
 *   a reconnect (to the same or the next relay) every document opens its session again.
 * - The lock client is a session like a document (SessionLink of kind 'locks').
 * - Refcounted: with no document (nor lock client) left it closes after LINGER_MS (`idle` tells its owner).
 * - Failover moves the whole socket, every session with it, to the next URL.
 * - Fallback: a relay that closes the upgrade with 4404 `invalid-doc-name` has no multiplexed
 *   endpoint (it takes `.capsync/mux` for a reserved document name). That URL is remembered
 *   (`noMux`, kept by the owner across sockets) and left out; when every URL is, the documents
 *   are told (`noMux()`) and use a socket each. Not yet: probing such a relay again later.
 */
export class RelaySocket implements MuxHandler {
  private dialer: Dialer | null = null;
  private sessions: MuxSessions | null = null;
  private readonly users = new Set<SocketUser>();
  private lingering: ReturnType<typeof setTimeout> | null = null;
  /** The dialer was started (once per dialer: documents that come later just wait for it). */
  private started = false;
  /** A refusal stopped the dialer (a token refused): the next document that starts (or `connect()`) dials again. */
  private halted = false;
  /** The open link's channel (to close the socket when its sids run out). */
  private dialerChannel: DialedChannel | null = null;
  /** The open socket's FrameBatch: flushed before the socket is closed from here. */
  private batch: FrameBatch | null = null;
  /** The open socket's FairSocket (the relay's chunk credits go to it) and what we credit of the relay's chunks. */
  private fair: FairSocket | null = null;
  private credits: ChunkCredits | null = null;
  /** The capabilities of the open link's relay hello (what kinds of session it serves). */
  private relayCapabilities: readonly string[] = [];
  private destroyed = false;
  /** The open socket's session cap, from the relay's hello (`mux-sessions:`; Infinity if none). */
  private sessionCap = Infinity;
  /** A document was kept waiting at the cap: a session that ends lets it open (see `sessionEnded`). */
  private waitingAtCap = false;

  constructor(
    private readonly options: RelaySocketOptions,
    /** URLs known not to serve the multiplexed endpoint (shared by the owner's sockets). */
    private readonly noMuxUrls: Set<string>,
    /** Called once the socket closed for want of documents: the owner forgets it. */
    private readonly idle: (socket: RelaySocket) => void,
  ) {}

  /** True once every URL refused the multiplexed endpoint. */
  get muxRefused(): boolean {
    return this.options.urls.every((u) => this.noMuxUrls.has(u));
  }

  get state(): 'offline' | 'connecting' | 'open' {
    return this.dialer?.state ?? 'offline';
  }

  get currentUrl(): string {
    return this.dialer?.currentUrl ?? this.options.urls.find((u) => !this.noMuxUrls.has(u)) ?? this.options.urls[0]!;
  }

  /** True while the socket is up and sessions can be opened. */
  get connected(): boolean {
    return this.sessions !== null;
  }

  /**
   * `user` wants to sync (this also restarts a socket a refusal stopped, as a document's own
   * socket would be dialled again). Its `socketOpen` is called now if the socket is open, else
   * when it opens.
   */
  use(user: SocketUser): void {
    if (this.destroyed) return;
    this.users.add(user);
    if (this.lingering) clearTimeout(this.lingering);
    this.lingering = null;
    if (this.muxRefused) {
      user.noMux();
      return;
    }
    if (!this.dialer) this.dialer = this.newDialer();
    if (!this.started || this.halted) this.startDialer();
    if (this.sessions) user.socketOpen();
  }

  /** `user` no longer syncs (its session is closed by itself); the last one starts the linger. */
  unuse(user: SocketUser): void {
    if (!this.users.delete(user) || this.users.size > 0 || this.destroyed) return;
    this.lingering = setTimeout(() => {
      this.lingering = null;
      if (this.users.size === 0) {
        this.destroy();
        this.idle(this);
      }
    }, LINGER_MS);
  }

  /**
   * Opens a session for a document: its frames may follow at once. Null while the socket is
   * down, and while it has as many sessions as the relay allows (its hello's `mux-sessions:`):
   * the document waits, and its `socketOpen` is called again once a session ended. Opened past
   * the cap, the sessions would be refused in a row, and past `--max-refused-opens-per-socket`
   * the relay closes the socket and every document on it — again after each reconnect, since
   * every document opens again (a writer who adds many autoLoad subdocuments did that to each
   * reader of the document).
   */
  openSession(request: Omit<SessionOpenMessage, 'type' | 'sid'>): SessionChannel | null {
    if (!this.sessions) return null;
    if (this.sessions.size >= this.sessionCap) {
      this.waitingAtCap = true;
      return null;
    }
    try {
      return this.sessions.open(request);
    } catch (err) {
      // Sids used up (after 2^31 opens): a new socket starts afresh.
      this.batch?.flush();
      this.dialerChannel?.close(CloseCode.BadMessage, closeReasonFor('bad-message', (err as Error).message));
      return null;
    }
  }

  /** The relay's session cap, when the open socket is at it (a document that wants a session waits); else null. */
  get fullAt(): number | null {
    return this.sessions && this.sessions.size >= this.sessionCap ? this.sessionCap : null;
  }

  /** A document's session ended (closed by it or by the relay): a document waiting at the cap may open one. */
  sessionEnded(): void {
    if (!this.waitingAtCap || !this.sessions || this.sessions.size >= this.sessionCap) return;
    this.waitingAtCap = false;
    for (const u of [...this.users]) {
      if (this.waitingAtCap) return; // full again: the rest wait for the next end
      u.socketOpen();
    }
  }

  /**
   * Whether the relay of the open socket announced `capability` in its hello: `locks` says it
   * serves a lock session (a relay from before lock sessions does not).
   */
  serves(capability: string): boolean {
    return this.sessions !== null && this.relayCapabilities.includes(capability);
  }

  /** The relay proved the socket works (a document caught up): the next failure starts a new round. */
  healthy(): void {
    this.dialer?.healthy();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.lingering) clearTimeout(this.lingering);
    // The sessions' closes go before the socket's.
    this.batch?.flush();
    this.dialer?.destroy('client closed');
    this.dialer = null;
  }

  // ---- MuxHandler: the control session ----

  open(msg: SessionOpenMessage): void {
    // A relay does not open sessions on a client's socket.
    throw new ProtocolError('bad-message', `the relay opened session ${msg.sid}; clients take no sessions`);
  }

  control(msg: Message): void {
    switch (msg.type) {
      case 'session-opened':
      case 'pong':
      case 'hello':
        return; // The permission is the relay's to enforce; a late pong or a repeated hello says nothing new.
      case 'ping':
        this.sessions?.sendControl({ type: 'pong', id: msg.id });
        return;
      case 'error':
        this.emitError(new CapsyncError(msg.code, msg.message));
        return;
      case 'chunk-credit':
        this.fair?.credit(msg.bytes);
        return;
      default:
        throw new ProtocolError('unknown-message-type', `${msg.type} messages are not taken on the control session`);
    }
  }

  chunkTaken(bytes: number): void {
    this.credits?.taken(bytes);
  }

  // ---- the dialer ----

  private startDialer(): void {
    this.halted = false;
    this.started = true;
    this.dialer!.start();
  }

  private newDialer(): Dialer {
    const { options } = this;
    const retryUnauthorized = typeof options.token === 'function';
    let lastClose: { code: number; url: string; opened: boolean } | null = null;
    const dialer = new Dialer({
      ...clientDialerOptions({ ...options, urls: options.urls.filter((u) => !this.noMuxUrls.has(u)) }, MUX_PATH),
      hello: helloFor('client', [MUX_BATCH_CAPABILITY, MUX_FLOW_CAPABILITY, ...(options.ownerKey ? [OWNER_KEY_PREFIX + options.ownerKey] : [])]),
      // A relay that upgrades /.capsync/mux but does not say it serves it is not one we can talk to.
      expectHello: (hello) => {
        if (!hello.capabilities.includes(MUX_CAPABILITY)) return new CapsyncError('invalid-doc-name', 'the relay does not announce the multiplexed endpoint');
        this.sessionCap = muxSessionsOf(hello.capabilities);
        return null;
      },
      control: MUX_CONTROL_FRAMING,
      refusalAction: (code, refusal) => {
        if (lastClose && !lastClose.opened && code === CloseCode.InvalidDocName) return 'handled';
        const action = defaultRefusalAction(code, refusal, retryUnauthorized);
        if (action === 'stop') this.halted = true;
        return action;
      },
    });
    dialer.on('state', () => {
      for (const u of [...this.users]) u.socketState();
    });
    dialer.on('open', ({ channel, hello }) => this.socketOpened(channel, hello?.capabilities ?? []));
    dialer.on('close', (info) => {
      lastClose = info;
      if (!info.opened && info.code === CloseCode.InvalidDocName && !this.destroyed) this.refusedMux(dialer, info.url);
    });
    dialer.on('error', (err) => {
      // The fallback is not an error of the app's.
      if (lastClose && !lastClose.opened && lastClose.code === CloseCode.InvalidDocName) return;
      this.emitError(err);
    });
    return dialer;
  }

  private socketOpened(channel: DialedChannel, capabilities: readonly string[]): void {
    // Large messages (a big document's first sync) go as chunks, taking turns with the other
    // documents' frames, both ways: the relay sends chunks too, put together here.
    // And the small frames of one task leave in one message, when the relay takes batches.
    const batch = new FrameBatch(channel);
    batch.enabled = capabilities.includes(MUX_BATCH_CAPABILITY);
    const fair = new FairSocket(batch);
    const sessions = new MuxSessions(fair, true, this, new ChunkAssembler());
    this.batch = batch;
    this.fair = fair;
    // Chunk flow control both ways, when the relay does it: the relay's large answers wait for
    // our credit instead of filling the operating system's buffers ahead of other documents.
    this.credits = new ChunkCredits((bytes) => sessions.sendControl({ type: 'chunk-credit', bytes }));
    if (capabilities.includes(MUX_FLOW_CAPABILITY)) {
      fair.enableFlow(FLOW_WINDOW_BYTES);
      this.credits.enabled = true;
    }
    this.sessions = sessions;
    this.dialerChannel = channel;
    this.waitingAtCap = false;
    this.relayCapabilities = capabilities;
    channel.attach({
      message: (frame) => {
        try {
          sessions.receive(frame);
        } catch (err) {
          const e = err instanceof CapsyncError ? err : new CapsyncError('internal', (err as Error).message);
          this.emitError(e);
          batch.flush();
          channel.close(closeCodeFor(e.code), closeReasonFor(e.code, e.message));
        }
      },
      close: (code, reason) => {
        if (this.sessions === sessions) {
          this.sessions = null;
          this.dialerChannel = null;
          this.batch = null;
          this.fair = null;
          this.credits = null;
        }
        batch.clear();
        fair.clear();
        // Every session ends with the socket's code: its document waits for the next socket.
        sessions.socketClosed(code, reason);
      },
      error: () => {},
    });
    for (const u of [...this.users]) u.socketOpen();
  }

  /** `url` has no multiplexed endpoint: dial the others, or hand every document over to a socket each. */
  private refusedMux(dialer: Dialer, url: string): void {
    this.noMuxUrls.add(url);
    dialer.destroy('no multiplexed endpoint');
    if (this.dialer !== dialer) return;
    this.dialer = null;
    if (this.muxRefused) {
      for (const u of [...this.users]) u.noMux();
      return;
    }
    this.dialer = this.newDialer();
    this.startDialer();
  }

  private emitError(err: CapsyncError): void {
    for (const u of [...this.users]) u.socketError(err);
  }
}

/**
 * One client's RelaySocket, made when a document first wants one and forgotten once it closed
 * for want of documents; and the URLs known to have no multiplexed endpoint, kept across them.
 */
export class RelaySockets {
  private socket: RelaySocket | null = null;
  private readonly noMux = new Set<string>();
  private closed = false;

  constructor(private readonly options: RelaySocketOptions) {}

  get(): RelaySocket {
    if (this.closed) throw new CapsyncError('internal', 'client is closed');
    this.socket ??= new RelaySocket(this.options, this.noMux, (s) => {
      if (this.socket === s) this.socket = null;
    });
    return this.socket;
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
    this.socket = null;
  }
}
