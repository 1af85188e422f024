import { ObservableV2 } from 'lib0/observable';
import { AuthError, Backoff, CapsyncError, CloseCode, checkProtocolVersion, closeReasonFor, helloFor, type BackoffOptions, OWNER_KEY_PREFIX, PROTOCOL_VERSION, decodeMessage, encodeMessage, type Message } from '@capsync/core';
import { FATAL_CLOSE_CODES, refusalFor } from './refusals.js';
import { relayUrlList } from './relay-urls.js';
import type { WebSocketConstructor, WebSocketLike } from './websocket-like.js';


const TOKEN_PROTOCOL_PREFIX = 'capsync.jwt.';
const CAPSYNC_PROTOCOL = 'capsync';

export type LinkState = 'offline' | 'connecting' | 'open';
export type TokenSource = string | (() => string | Promise<string>);

export interface RelayLinkOptions {
  /**
   * Relay base URLs, ws:// or wss://, tried in this order and then round robin (see
   * RelayLink); the document name is appended as the path. At least one.
   */
  urls: readonly string[];
  docName: string;
  WebSocket: WebSocketConstructor;
  token?: TokenSource;
  /** A ping goes out after this long without any message from the relay. */
  heartbeatIntervalMs: number;
  /** The link counts as dead when nothing arrives this long after a ping (or a connect). */
  heartbeatTimeoutMs: number;
  backoff: BackoffOptions;
  /**
   * The client's lock owner key, announced in the hello as `owner:<key>` (see
   * OWNER_KEY_PREFIX): on a relay without a token `sub`, the client's leases belong to it.
   */
  ownerKey?: string;
  /**
   * Refusals (close code and reason) the link's owner recovers from itself: the link neither
   * reports them as errors nor stops on them; it reconnects with backoff unless the owner
   * stopped it from its 'close' listener. Default: none.
   */
  ownerHandles?: (code: number, reason: string) => boolean;
  /** More hello capabilities, asked for on every connect (a document's `writes:<client id>`). */
  helloCapabilities?: () => string[];
  /** Injectable for tests. */
  random?: () => number;
}

export { relayUrlList };

export interface RelayLinkEvents {
  state: (state: LinkState) => void;
  /**
   * A socket opened and our hello went out; `connection` numbers connections from 1 (across
   * relays), `url` is the relay base URL it went to (also `currentUrl`).
   */
  open: (connection: number, url: string) => void;
  message: (msg: Message) => void;
  /** The current socket is gone (closed, failed, or declared dead by the heartbeat). */
  close: (info: { code: number; reason: string }) => void;
  /** Something the app should know: auth refused, bad close codes, token errors. */
  error: (err: CapsyncError) => void;
}

/**
 * Why an attempt or connection ended, for choosing the next relay and delay:
 * - 'unreachable': the relay could not be reached or stopped answering (connect error or
 *   timeout, heartbeat death, a close without a refusal, GoingAway from a relay shutting down);
 * - 'refused': the relay answered with a retryable refusal (an error close code);
 * - 'local': this side failed before any relay was involved (the token function threw).
 */
type Failure = 'unreachable' | 'refused' | 'local';

/**
 * One resilient WebSocket to a relay for one document: connects, says hello, keeps the
 * link honest with a heartbeat (so a half-open link is noticed within
 * heartbeatIntervalMs + heartbeatTimeoutMs), and reconnects with capped, jittered
 * exponential backoff — at once when the browser reports it is back online.
 *
 * Several relays (`urls`), failover contract:
 * - The first attempt goes to `urls[0]`. The link sticks with the relay it is on: it never
 *   moves while that relay works, and a deliberate `stop()`/`start()` or the browser going
 *   offline and online again retry the same relay.
 * - Every attempt or connection that fails for a reason other than a fatal refusal (connect
 *   error, connect timeout, heartbeat death, a close before or after the relay proved
 *   healthy, GoingAway from a relay shutting down, a retryable refusal) sends the next
 *   attempt to the next URL, round robin. `currentUrl` names the relay in use, or the one the
 *   next attempt goes to; 'open' carries it too.
 * - Within one round, moving on after an unreachable relay waits only a jittered delay under
 *   `backoff.baseMs` (spreading the clients of a dead relay a little) and does not grow the
 *   backoff. Once every URL failed in a row — or a relay refused — the next attempt waits
 *   the usual capped exponential backoff, so a cluster that is down sees no reconnect storm.
 *   `healthy()` starts a new round and resets the backoff. With one URL every failure ends a
 *   round: exactly the single-relay behaviour.
 * - Nothing of a connection that is gone leaks into the next: once 'close' is emitted, no
 *   message of that socket is ever emitted (late acks of an old relay cannot be mistaken for
 *   acks of the new connection's messages), and each connection starts with its own 'open'.
 *
 * Permission errors do not cause a reconnect storm: 'forbidden', a bad document name and an
 * incompatible protocol version (either side's hello) stop the link (they would be refused
 * everywhere); 'unauthorized' retries only when the token is a function (it may mint a
 * fresh token), and then with backoff; everything else (not-owner, a fenced-area refusal,
 * limits) is retried with backoff (see refusals.ts). `start()` restarts a stopped link.
 */
export class RelayLink extends ObservableV2<RelayLinkEvents> {
  private socket: WebSocketLike | null = null;
  private stateValue: LinkState = 'offline';
  private readonly backoff: Backoff;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeatTimer: ReturnType<typeof setTimeout> | null = null;
  private deadline: ReturnType<typeof setTimeout> | null = null;
  private pingId = 0;
  private connectionCount = 0;
  /** Why the link is not trying: the app disconnected, a fatal refusal, or closed. */
  private stopped: 'user' | 'fatal' | 'closed' | null = null;
  /** The browser says it has no network: wait for 'online' instead of retrying. */
  private browserOffline = false;
  private attempt = 0;
  private readonly urls: readonly string[];
  /** Index in `urls` of the relay in use, or of the one the next attempt goes to. */
  private urlIndex = 0;
  /** Failed attempts in a row since the round began (start, online, or a healthy connection). */
  private failuresInRound = 0;
  private readonly random: () => number;

  constructor(private readonly options: RelayLinkOptions) {
    super();
    this.urls = relayUrlList(options.urls);
    // Looked up per call, not captured: tests stub Math.random after modules load.
    this.random = options.random ?? (() => Math.random());
    this.backoff = new Backoff(options.backoff, options.random);
    const w = globalThis as { addEventListener?: (type: string, fn: () => void) => void; navigator?: { onLine?: boolean } };
    if (typeof w.addEventListener === 'function' && typeof (globalThis as { window?: unknown }).window !== 'undefined') {
      w.addEventListener('online', this.onOnline);
      w.addEventListener('offline', this.onOffline);
      this.browserOffline = w.navigator?.onLine === false;
    }
  }

  get state(): LinkState {
    return this.stateValue;
  }

  /** Base URL of the relay the link is on (open or connecting), or that its next attempt goes to. */
  get currentUrl(): string {
    return this.urls[this.urlIndex]!;
  }

  /** Starts (or restarts after `stop` or a fatal refusal) connecting, to the current relay. */
  start(): void {
    if (this.stopped === 'closed') return;
    this.stopped = null;
    this.newRound();
    this.connectNow();
  }

  /** Closes the socket and stays offline until `start`. */
  stop(): void {
    if (this.stopped === 'closed') return;
    this.stopped = 'user';
    this.dropSocket(CloseCode.Normal, 'client disconnected');
  }

  /** Sends a message if the socket is open; returns false otherwise. */
  send(msg: Message): boolean {
    const socket = this.socket;
    if (!socket || this.stateValue !== 'open' || socket.readyState !== 1) return false;
    socket.send(encodeMessage(msg));
    return true;
  }

  /**
   * The relay proved the connection works (it answered our sync): the next failure starts a
   * new round of the relay list with the backoff afresh.
   */
  healthy(): void {
    this.newRound();
  }

  override destroy(): void {
    if (this.stopped === 'closed') return;
    this.dropSocket(CloseCode.Normal, 'client closed');
    this.stopped = 'closed';
    const w = globalThis as { removeEventListener?: (type: string, fn: () => void) => void };
    w.removeEventListener?.('online', this.onOnline);
    w.removeEventListener?.('offline', this.onOffline);
    super.destroy();
  }

  // ---- connecting ----

  private connectNow(): void {
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.socket || this.stopped || this.browserOffline) return;
    void this.connect(++this.attempt);
  }

  private async connect(attempt: number): Promise<void> {
    this.setState('connecting');
    let token: string | undefined;
    try {
      const source = this.options.token;
      token = typeof source === 'function' ? await source() : source;
    } catch (err) {
      this.emit('error', [new AuthError('unauthorized', `the token function failed: ${(err as Error)?.message ?? err}`, { cause: err })]);
      if (attempt === this.attempt) this.retryLater('local');
      return;
    }
    // stop(), destroy() or another attempt happened while the token was being fetched.
    if (attempt !== this.attempt || this.stopped || this.socket || this.browserOffline) return;
    const relay = this.currentUrl;
    const url = `${relay.replace(/\/+$/, '')}/${encodeURIComponent(this.options.docName)}`;
    let socket: WebSocketLike;
    try {
      socket = new this.options.WebSocket(url, token ? [CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token] : [CAPSYNC_PROTOCOL]);
    } catch (err) {
      this.emit('error', [new CapsyncError('unavailable', `cannot connect to ${relay}: ${(err as Error).message}`, { cause: err })]);
      this.retryLater('unreachable');
      return;
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    // A connect that hangs (dead network, black-holed SYN) counts as a failed attempt.
    this.armDeadline();
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.setState('open');
      this.armHeartbeat();
      const extras = [...(this.options.ownerKey ? [OWNER_KEY_PREFIX + this.options.ownerKey] : []), ...(this.options.helloCapabilities?.() ?? [])];
      socket.send(encodeMessage(helloFor('client', extras)));
      this.emit('open', [++this.connectionCount, relay]);
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.armHeartbeat();
      const data = event.data;
      if (!(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) return;
      let msg: Message;
      try {
        msg = decodeMessage(data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      } catch (err) {
        this.emit('error', [err as CapsyncError]);
        this.dropSocket(CloseCode.BadMessage, 'bad-message: undecodable frame from relay');
        return;
      }
      if (msg.type === 'hello') {
        try {
          checkProtocolVersion(msg.protocolVersion);
        } catch (err) {
          // Nothing this client says would be understood: a fatal refusal (see refusals.ts),
          // reported and not retried until the app or the relay is upgraded.
          this.dropSocket(CloseCode.ProtocolVersion, closeReasonFor('protocol-version', (err as Error).message));
          return;
        }
      }
      this.emit('message', [msg]);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.onSocketGone(event.code, event.reason);
    };
    socket.onerror = () => {
      // Always followed by a close event; nothing to add here.
    };
  }

  /** The socket closed or was declared dead: report, then retry unless told not to. */
  private onSocketGone(code: number, reason: string): void {
    this.clearTimers();
    this.socket = null;
    this.setState('offline');
    this.emit('close', [{ code, reason }]);
    const refusal = refusalFor(code, reason);
    if (refusal && this.options.ownerHandles?.(code, reason)) {
      this.retryLater('refused');
      return;
    }
    if (refusal) {
      this.emit('error', [refusal]);
      const retryable = refusal.code === 'unauthorized' && typeof this.options.token === 'function';
      // not-owner shares 4403 with forbidden but can heal: in a mesh, a relay that has not yet
      // received another user's content this client carries refuses it until its peers deliver
      // it (then this client's sync step 2 no longer carries it); so it is retried with backoff.
      if ((FATAL_CLOSE_CODES.has(code) && refusal.code !== 'not-owner') || (refusal.code === 'unauthorized' && !retryable)) {
        this.stopped = 'fatal';
        return;
      }
    }
    this.retryLater(refusal ? 'refused' : 'unreachable');
  }

  private retryLater(failure: Failure): void {
    if (this.stopped || this.retryTimer) return;
    this.setState('offline');
    // Our own network is down, not the relay: keep the relay; 'online' retries it.
    if (this.browserOffline) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connectNow();
    }, this.nextAttempt(failure));
  }

  /** Moves to the relay of the next attempt and returns how long to wait for it (class comment). */
  private nextAttempt(failure: Failure): number {
    // A failure on this side says nothing about the relay: same relay, usual backoff.
    if (failure === 'local') return this.backoff.next();
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.failuresInRound++;
    if (failure === 'unreachable' && this.failuresInRound < this.urls.length) {
      // Another relay may well be up: no need to wait out the backoff, only to spread out.
      return Math.floor(this.random() * this.options.backoff.baseMs);
    }
    this.failuresInRound = 0;
    return this.backoff.next();
  }

  private newRound(): void {
    this.failuresInRound = 0;
    this.backoff.reset();
  }

  /** Closes the current socket without waiting for the close handshake. */
  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (!socket) {
      this.setState('offline');
      return;
    }
    socket.onopen = socket.onmessage = socket.onclose = null;
    // Not null: `ws` emits 'error' when a CONNECTING socket is closed, and an EventEmitter
    // error without a listener would crash a Node process.
    socket.onerror = () => {};
    try {
      socket.close(code, reason);
    } catch {
      // Already closing.
    }
    this.onSocketGone(code, reason);
  }

  // ---- heartbeat ----

  /** Any message proves the link alive: push the ping out and cancel the death deadline. */
  private armHeartbeat(): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = setTimeout(() => {
      this.heartbeatTimer = null;
      this.send({ type: 'ping', id: ++this.pingId });
      this.armDeadline();
    }, this.options.heartbeatIntervalMs);
  }

  private armDeadline(): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = setTimeout(() => {
      this.deadline = null;
      // Half-open: the OS may not notice for minutes. Drop it and reconnect.
      this.dropSocket(CloseCode.GoingAway, 'unavailable: no answer from the relay within the heartbeat timeout');
    }, this.options.heartbeatTimeoutMs);
  }

  private clearTimers(): void {
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    if (this.deadline) clearTimeout(this.deadline);
    this.heartbeatTimer = this.deadline = null;
  }

  // ---- browser network events ----

  private readonly onOnline = (): void => {
    this.browserOffline = false;
    this.newRound();
    this.connectNow();
  };

  private readonly onOffline = (): void => {
    this.browserOffline = true;
    if (this.socket) this.dropSocket(CloseCode.GoingAway, 'unavailable: the browser went offline');
  };

  private setState(state: LinkState): void {
    if (state === this.stateValue) return;
    this.stateValue = state;
    this.emit('state', [state]);
  }
}
