// Over ~400 lines (2026-12-07, 448 with live permissions' pending re-decisions): one multiplexed
// socket's sessions, their authorization and their shared queues; move the session-open
// authorization (pending decisions, credential versions) into mux/session-authorizer.ts next.
import {
  CapsyncError,
  ChunkAssembler,
  CloseCode,
  FairSocket,
  ChunkCredits,
  FLOW_WINDOW_BYTES,
  FrameBatch,
  MUX_BATCH_CAPABILITY,
  MUX_FLOW_CAPABILITY,
  LimitExceededError,
  MuxSessions,
  ProtocolError,
  checkProtocolVersion,
  closeCodeFor,
  closeCodeName,
  closeReasonFor,
  helloFor,
  muxSessionsCapability,
  subdocStorageName,
  validateDocName,
  type HelloMessage,
  type Message,
  type MuxHandler,
  type SessionOpenMessage,
} from '@capsync/core';
import type { AccessControl, AccessGrant, Principal } from '../auth/access.js';
import { onCredentialExpiry } from '../auth/credential-expiry.js';
import { ConnectionIdentity, ownerKeyOf } from '../locks/lock-identity.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import { AccountedChannel, type RelaySocket, type ServedChannel } from '../relay/accounted-channel.js';
import type { SendBuffer, SendBufferOptions } from '../relay/send-buffer.js';
import { MuxSessionChannel, type MuxServedDoc } from './mux-session-channel.js';
import type { AddressSessions } from './address-sessions.js';
import { LOCK_SESSION_KEY, authorizeLockSession } from './lock-sessions.js';
import { SocketInputQueue } from './socket-input-queue.js';
import { fairSocket } from './fair-relay-socket.js';
import type { LiveCredential, LiveCredentialOwner, PermissionTarget } from '../auth/live-credential.js';

export interface MuxConnectionDeps {
  access: AccessControl;
  metrics: RelayMetrics;
  logger: Logger;
  /** The socket's send-buffer bounds (one SendBuffer for all its sessions). */
  outbound: SendBufferOptions;
  /** `--max-sessions-per-socket`. */
  maxSessions: number;
  /** The sessions of each address's multiplexed sockets (`--max-sessions-per-address`), relay-wide. */
  addressSessions: AddressSessions;
  /** `--max-refused-opens-per-socket`: refusals in a row past which the socket is closed. */
  maxRefusedOpens: number;
  /** The client's address (undefined: a peer relay, not counted). */
  address: string | undefined;
  /** Input the socket's sessions may queue together while their documents load (one plain connection's bound). */
  maxQueuedBytes: number;
  /** `--max-message-bytes`: also the largest message a client may send in chunks. */
  maxMessageBytes: number;
  /**
   * Serves document `docName` over `channel` as a plain connection is served (RelayConnection).
   * The session ends when its channel closes: by the client, by the session itself, or with the socket.
   */
  openDoc(channel: ServedChannel, docName: string, grant: AccessGrant): MuxServedDoc & PermissionTarget;
  /** Serves the socket's lock session (see mux/lock-sessions.ts) as the lock endpoint serves a connection. */
  openLocks(channel: ServedChannel, grant: AccessGrant): MuxServedDoc;
  /** More capabilities of the socket's hello (the relay's lock backend, as the lock endpoint says it). */
  helloExtras: readonly string[];
  /** The socket's credential, kept current (`token-refresh`) and re-checked (see LiveCredential). */
  liveCredential(owner: LiveCredentialOwner): LiveCredential;
}

/** How long a slow consumer's close handshake may take before the socket is dropped. */
const SLOW_CLOSE_MS = 1000;

/**
 * One multiplexed socket (`/.capsync/mux`, see protocol/mux-frame.ts) of a client, authenticated
 * once at the upgrade (its Principal). What is the socket's is here; each document is a session
 * served exactly as a plain connection (RelayConnection, its DocSession and ClientSessionHost)
 * over a MuxSessionChannel.
 *
 * - Control session (sid 0): the client's hello, once and first (version checked: 4426; its
 *   owner key checked: 4400), answered with the relay's hello (which announces `mux` and
 *   `mux-sessions:<--max-sessions-per-socket>`); ping.
 *   Every session takes that hello as its own, plus the capabilities its open adds.
 * - `session-open`: the document is authorized for the principal (4403), its name checked
 *   (4404), the socket's session count checked (`--max-sessions-per-socket`, 4413). A refusal
 *   is a `session-close` with that code, and every other session carries on. Accepted: a
 *   `session-opened` with the permission, then the document's session.
 * - One session per document: a second open of a document open on the socket is refused (4400).
 * - `kind: 'locks'`: the lock protocol (LockConnection), one session per socket, needing write
 *   access to `.capsync/locks` (see lock-sessions.ts); counted as a session like a document.
 * - A Yjs subdocument (`subdoc`: its guid) is a document of its own, stored and loaded under a
 *   reserved name (`.capsync/sub/<parent>/<guid>`, subdoc-name.ts) when a session opens it, with
 *   its parent's permission; a bad guid is refused 4404. It counts as a session like any other.
 * - The sessions of an address's sockets are capped together (`--max-sessions-per-address`,
 *   AddressSessions): past it an open is refused (4413) as past the socket's cap.
 * - At most `--max-refused-opens-per-socket` opens are refused in a row; the next refusal
 *   closes the socket (4413).
 * - Input its sessions queue while their documents load is bounded per socket as one plain
 *   connection's (SocketInputQueue): past it the session it was for fails (4429), alone.
 * - What breaks the socket closes it, and with it every session: a malformed frame or sid, a
 *   control message out of place (4400), a slow consumer (4429: the socket's one SendBuffer),
 *   silence (4408, see watchLiveness), the token's expiry (4401), shutdown (1001).
 * - Live permissions: a `token-refresh` on the control session replaces the socket's credential
 *   (and expiry) for every session, and each document session's permission is decided again
 *   (LiveCredential): downgraded live, or that session alone closed (4412). A refused refresh
 *   closes the socket (4401). Lock sessions keep the permission they opened with. A session
 *   still waiting for its authorization when a refresh is taken is decided again with the new
 *   credential before it is served (`decideLater`).
 */
export class MuxConnection implements MuxHandler {
  /** The socket's SendBuffer (liveness checks it after pings). */
  readonly outbound: SendBuffer;
  private readonly channel: AccountedChannel;
  /** Where the sessions' frames wait for their turn (see fairSocket). */
  private readonly fair: FairSocket;
  private readonly batch: FrameBatch;
  /** What this relay credits of the client's chunks, once its hello said it takes credits. */
  private readonly credits = new ChunkCredits((bytes) => this.sendControl({ type: 'chunk-credit', bytes }));
  private readonly sessions: MuxSessions;
  /** What its sessions hold queued while their documents load: one plain connection's worth. */
  private readonly input: SocketInputQueue;
  private hello: HelloMessage | null = null;
  /** The documents open on this socket: one session each (see `authorize`). */
  private readonly openNames = new Set<string>();
  /** Opens refused since the last accepted one (see `--max-refused-opens-per-socket`). */
  private refusedInARow = 0;
  /** Opens waiting for an authorization callback's answer. */
  private authorizing = 0;
  private closed = false;
  private cancelExpiry: (() => void) | null = null;
  /** The socket's credential now (see LiveCredential), and its document sessions. */
  private readonly live: LiveCredential;
  private readonly targets = new Set<PermissionTarget>();

  constructor(
    socket: RelaySocket,
    principal: Principal,
    private readonly deps: MuxConnectionDeps,
  ) {
    // Fair between sessions: a large answer goes as chunks, interleaved with the other sessions'
    // frames (FairSocket). Accounted above it, so what waits for its turn is unsent bytes too.
    // Batched below that: the small frames of one task leave in one message, once the client's
    // hello said it takes batches (MUX_BATCH_CAPABILITY).
    this.batch = new FrameBatch(socket);
    this.fair = new FairSocket(this.batch);
    this.channel = new AccountedChannel(fairSocket(socket, this.fair, this.batch), deps.outbound);
    this.outbound = this.channel.outbound;
    // A client's large message (a big paste, a first sync of a large offline document) comes as
    // chunks: held per socket up to one message of --max-message-bytes, and that much again for
    // unfinished ones of other sessions (what one frame of the socket may cost, twice).
    const chunks = new ChunkAssembler({ maxMessageBytes: deps.maxMessageBytes, maxOpenBytes: 2 * deps.maxMessageBytes });
    this.sessions = new MuxSessions(this.channel, false, this, chunks);
    this.input = new SocketInputQueue(deps.maxQueuedBytes);
    this.channel.attach({
      message: (frame) => this.receiveFrame(frame),
      // A text frame, or the consumer given up on (slow-consumer).
      error: (err) => this.fail(err),
      close: (code, reason) => this.ended(code, reason),
    });
    const socketClosed = (): boolean => this.closed;
    this.live = deps.liveCredential({
      targets: () => {
        for (const t of this.targets) if (t.closed) this.targets.delete(t);
        return this.targets;
      },
      replaced: (fresh) => this.watchExpiry(fresh),
      refused: (err) => this.fail(err),
      get closed() {
        return socketClosed();
      },
    });
    this.watchExpiry(principal);
  }

  private get principal(): Principal {
    return this.live.current;
  }

  private watchExpiry(principal: Principal): void {
    this.cancelExpiry?.();
    this.cancelExpiry = null;
    if (principal.expiresAt !== undefined) {
      this.cancelExpiry = onCredentialExpiry(principal.expiresAt, () => this.fail(new CapsyncError('unauthorized', 'token expired')));
    }
  }

  /** Feeds one received WebSocket message. */
  receive(data: Uint8Array, isBinary: boolean): void {
    if (this.closed) return;
    this.deps.metrics.bytesIn.inc(data.byteLength);
    this.channel.received(data, isBinary);
  }

  private receiveFrame(frame: Uint8Array): void {
    try {
      this.sessions.receive(frame);
    } catch (err) {
      if (err instanceof CapsyncError) return this.fail(err);
      this.deps.logger.error({ err }, 'unexpected error handling a multiplexed frame');
      this.fail(new CapsyncError('internal', 'internal error'));
    }
  }

  // ---- the control session (MuxHandler) ----

  control(msg: Message): void {
    this.deps.metrics.messagesIn.inc({ type: msg.type });
    switch (msg.type) {
      case 'hello':
        if (this.hello) throw new ProtocolError('bad-message', 'a second hello on one socket');
        checkProtocolVersion(msg.protocolVersion);
        // The owner key is checked once here, so a malformed one closes the socket, not every session.
        new ConnectionIdentity({}).hello(msg.capabilities);
        this.hello = msg;
        this.batch.enabled = msg.capabilities.includes(MUX_BATCH_CAPABILITY);
        // Flow control both ways: our chunks wait for its credit, and we credit its chunks.
        if (msg.capabilities.includes(MUX_FLOW_CAPABILITY)) {
          this.fair.enableFlow(FLOW_WINDOW_BYTES);
          this.credits.enabled = true;
        }
        // The session cap is announced, so a client keeps below it (see MUX_SESSIONS_PREFIX).
        this.sendControl(helloFor('relay-mux', [...this.deps.helloExtras, muxSessionsCapability(this.deps.maxSessions)]));
        return;
      case 'ping':
        this.sendControl({ type: 'pong', id: msg.id });
        return;
      case 'chunk-credit':
        this.fair.credit(msg.bytes);
        return;
      case 'token-refresh':
        this.live.refresh(msg.token);
        return;
      default:
        throw new ProtocolError('unknown-message-type', `${msg.type} messages are not taken on the control session`);
    }
  }

  chunkTaken(bytes: number): void {
    this.credits.taken(bytes);
  }

  open(msg: SessionOpenMessage): void {
    this.deps.metrics.messagesIn.inc({ type: msg.type });
    // Its sessions take the socket's hello (identity, quorum...): it must come first.
    if (!this.hello) throw new ProtocolError('bad-message', 'say hello on session 0 before opening sessions');
    let decision: AccessGrant | Promise<AccessGrant>;
    let name: string;
    // The credential the decision is made with (see `decideLater`).
    const version = this.live.version;
    try {
      ({ grant: decision, name } = this.authorize(msg));
    } catch (err) {
      if (!(err instanceof CapsyncError)) throw err;
      // The token expired: every session's problem, not this one's.
      if (err.code === 'unauthorized') throw err;
      this.countRefusal(msg, err);
      this.sessions.refuse(msg.sid, closeCodeFor(err.code), closeReasonFor(err.code, err.message));
      return;
    }
    const hello: HelloMessage = { ...this.hello, capabilities: [...this.hello.capabilities, ...msg.capabilities] };
    const address = this.deps.address;
    this.openNames.add(name);
    const channel = new MuxSessionChannel(msg.sid, this.sessions, hello, this.channel, this.input, () => {
      this.openNames.delete(name);
      this.deps.addressSessions.release(address);
    });
    this.sessions.accept(channel);
    if (!(decision instanceof Promise)) return this.serveSession(msg, channel, name, decision);
    void this.decideLater(msg, channel, name, decision, version);
  }

  /**
   * A session decided by the app's authorization callback (CallbackAccess): the session is live
   * meanwhile, what its client sends waits in it (counted against the socket's input bound, as
   * while a document loads), and it is served, or closed with the refusal's code, once answered.
   * The socket's other sessions go on. An answer about a credential the socket no longer holds (a
   * `token-refresh` was taken while it waited: `version` changed) is not used: the session is
   * decided again with the current credential first (a refresh's re-check covers only the
   * sessions already served), so an old token's write is never served after a downgrade.
   */
  private async decideLater(msg: SessionOpenMessage, channel: MuxSessionChannel, name: string, first: Promise<AccessGrant>, version: number): Promise<void> {
    // Counted until answered, not until the session closes: a client that opens and closes at
    // once must not start callback calls without bound (see `authorize`).
    this.authorizing++;
    try {
      let decision: AccessGrant | Promise<AccessGrant> = first;
      for (;;) {
        let grant: AccessGrant | null = null;
        let failure: unknown = null;
        try {
          grant = await decision;
        } catch (err) {
          failure = err;
        }
        if (channel.closed || this.closed) return;
        if (this.live.version !== version) {
          version = this.live.version;
          try {
            // Counted against its address once already (`counted`): decided again, not counted again.
            decision = msg.kind === 'locks' ? authorizeLockSession(this.deps.access, this.principal, msg, false) : this.deps.access.authorizeDoc(this.principal, msg.name);
          } catch (err) {
            decision = Promise.reject(err);
          }
          continue;
        }
        if (grant) return this.serveSession(msg, channel, name, grant);
        const refusal = failure instanceof CapsyncError ? failure : new CapsyncError('internal', 'authorization failed');
        if (!(failure instanceof CapsyncError)) this.deps.logger.error({ err: failure }, 'authorizing a session failed');
        try {
          this.countRefusal(msg, refusal);
        } catch (limit) {
          this.fail(limit as CapsyncError);
          return;
        }
        channel.close(closeCodeFor(refusal.code), closeReasonFor(refusal.code, refusal.message));
        return;
      }
    } finally {
      this.authorizing--;
    }
  }

  /** Serves an accepted session with its grant. */
  private serveSession(msg: SessionOpenMessage, channel: MuxSessionChannel, name: string, grant: AccessGrant): void {
    this.refusedInARow = 0;
    this.sendControl({ type: 'session-opened', sid: msg.sid, permission: grant.permission });
    // The socket watches the token's expiry for all its sessions: none of them needs a timer. A
    // permission an authorization callback gave (no token expiry) runs out per session.
    const { expiresAt: _socketWide, ...stripped } = grant;
    const sessionGrant = this.principal.expiresAt !== undefined ? stripped : grant;
    if (msg.kind === 'locks') return channel.serve(this.deps.openLocks(channel, sessionGrant));
    const served = this.deps.openDoc(channel, name, sessionGrant);
    this.targets.add(served);
    channel.serve(served);
  }

  /**
   * Counts and logs a refused open; throws LimitExceededError past `maxRefusedOpens` in a row. A
   * refusal costs the relay a reply and a log line for a few bytes of open: without a bound one
   * socket could ask for them without end (a plain connection is refused once).
   */
  private countRefusal(msg: SessionOpenMessage, err: CapsyncError): void {
    if (++this.refusedInARow > this.deps.maxRefusedOpens) {
      throw new LimitExceededError('max-refused-opens-per-socket', `max-refused-opens-per-socket: ${this.deps.maxRefusedOpens} opens of this socket were refused in a row`, { cause: err });
    }
    this.deps.metrics.refusals.inc({ reason: err.code });
    if (err instanceof LimitExceededError) this.deps.metrics.limitRefusals.inc({ limit: err.limit });
    this.deps.logger.info({ sid: msg.sid, doc: msg.name, subdoc: msg.subdoc.slice(0, 40) || undefined, code: err.code, msg: err.message }, 'refusing session');
  }

  /** The grant for one open and the name it is served under, or the error its refusal names. */
  private authorize(msg: SessionOpenMessage): { grant: AccessGrant | Promise<AccessGrant>; name: string } {
    if (this.sessions.size >= this.deps.maxSessions) {
      throw new LimitExceededError('max-sessions-per-socket', `max-sessions-per-socket: this socket has ${this.deps.maxSessions} sessions open; close one first`);
    }
    if (this.authorizing >= this.deps.maxSessions) {
      throw new LimitExceededError('max-sessions-per-socket', `max-sessions-per-socket: ${this.authorizing} opens of this socket are waiting for their authorization`);
    }
    // An owner key the open adds (the socket's hello had none) is checked here, so a malformed one
    // refuses this session alone: found later, by the session's connection, it closed the socket.
    ownerKeyOf(msg.capabilities);
    if (msg.kind === 'locks') {
      // Its name among the socket's open sessions is one no document can have: one per socket.
      return { grant: this.counted(() => authorizeLockSession(this.deps.access, this.principal, msg, this.openNames.has(LOCK_SESSION_KEY))), name: LOCK_SESSION_KEY };
    }
    // A subdocument (name and guid checked, 4404) is served under its reserved storage name.
    const name = servedName(msg);
    // One session per document per socket (the design's rule for relay-to-relay sockets too): a
    // second one would have every broadcast of the document sent twice to the same reader, and
    // a socket could so cost the fan-out (and awareness) of max-sessions-per-socket connections.
    // A subdocument is a document of its own here: one session per (parent, guid).
    if (this.openNames.has(name)) throw new ProtocolError('bad-message', `document "${name}" is already open on this socket (one session per document)`);
    // A subdocument carries its parent's permission (the parent's own name, never the reserved one).
    return { grant: this.counted(() => this.deps.access.authorizeDoc(this.principal, msg.name)), name };
  }

  /**
   * Counts the session against its address (its end gives it back), then decides it: over the
   * address's cap nothing is asked (an authorization callback included); refused at once, the
   * count is given back.
   */
  private counted(decide: () => AccessGrant | Promise<AccessGrant>): AccessGrant | Promise<AccessGrant> {
    const overAddressCap = this.deps.addressSessions.take(this.deps.address);
    if (overAddressCap) throw overAddressCap;
    try {
      return decide();
    } catch (err) {
      this.deps.addressSessions.release(this.deps.address);
      throw err;
    }
  }

  private sendControl(msg: Message): void {
    if (this.closed) return;
    this.deps.metrics.messagesOut.inc({ type: msg.type });
    this.sessions.sendControl(msg);
  }

  // ---- closing ----

  /** Closes the socket, and every session on it, because of `err`. */
  fail(err: CapsyncError): void {
    if (this.closed) return;
    this.deps.metrics.refusals.inc({ reason: err.code });
    if (err instanceof LimitExceededError) this.deps.metrics.limitRefusals.inc({ limit: err.limit });
    this.deps.logger.info({ sessions: this.sessions.size, code: err.code, msg: err.message }, 'closing multiplexed socket');
    this.close(closeCodeFor(err.code), closeReasonFor(err.code, err.message));
    if (err.code === 'slow-consumer') setTimeout(() => this.channel.terminate(), SLOW_CLOSE_MS).unref();
  }

  /** Closes the socket with a code and reason (shutdown: 1001). */
  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.closed) return;
    this.deps.metrics.closes.inc({ code: closeCodeName(code) });
    this.channel.close(code, reason);
    this.ended(code, reason);
  }

  /** The socket closed (by either side). */
  onClosed(): void {
    this.channel.transportClosed();
  }

  /** Once: every session ends with the socket's code, and the documents are released. */
  private ended(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.batch.clear();
    this.fair.clear();
    this.cancelExpiry?.();
    this.live?.ended();
    this.sessions.socketClosed(code, reason);
  }
}

/**
 * The relay's name of what an open asks for: its document, or for a subdocument (`subdoc` set)
 * the reserved `.capsync/sub/…` name (see subdoc-name.ts), which clients cannot open directly.
 * Throws 'invalid-doc-name' (4404) for a bad name or guid.
 */
function servedName(msg: SessionOpenMessage): string {
  return msg.subdoc === '' ? validateDocName(msg.name) : subdocStorageName(msg.name, msg.subdoc);
}
