import { ObservableV2 } from 'lib0/observable';
import {
  AuthError,
  CapsyncError,
  CloseCode,
  PROTOCOL_VERSION,
  decodeMessage,
  encodeMessage,
  errorCodeFromReason,
  type Message,
} from '@capsync/core';
import { Backoff, type BackoffOptions } from './backoff.js';
import type { WebSocketConstructor, WebSocketLike } from './websocket-like.js';

/** Capabilities this client announces in its hello. */
export const CLIENT_CAPABILITIES = ['ack', 'error', 'ping', 'quorum'];

const TOKEN_PROTOCOL_PREFIX = 'capsync.jwt.';
const CAPSYNC_PROTOCOL = 'capsync';

export type LinkState = 'offline' | 'connecting' | 'open';
export type TokenSource = string | (() => string | Promise<string>);

export interface RelayLinkOptions {
  /** Relay base URL, ws:// or wss://; the document name is appended as the path. */
  url: string;
  docName: string;
  WebSocket: WebSocketConstructor;
  token?: TokenSource;
  /** A ping goes out after this long without any message from the relay. */
  heartbeatIntervalMs: number;
  /** The link counts as dead when nothing arrives this long after a ping (or a connect). */
  heartbeatTimeoutMs: number;
  backoff: BackoffOptions;
  /** Injectable for tests. */
  random?: () => number;
}

export interface RelayLinkEvents {
  state: (state: LinkState) => void;
  /** A socket opened and our hello went out; `connection` numbers connections from 1. */
  open: (connection: number) => void;
  message: (msg: Message) => void;
  /** The current socket is gone (closed, failed, or declared dead by the heartbeat). */
  close: (info: { code: number; reason: string }) => void;
  /** Something the app should know: auth refused, bad close codes, token errors. */
  error: (err: CapsyncError) => void;
}

/** Close codes after which retrying cannot help until something changes. */
// FencedArea: the update that was refused would be resent on every reconnect, forever.
const FATAL_CLOSE_CODES = new Set<number>([CloseCode.Forbidden, CloseCode.InvalidDocName, CloseCode.FencedArea]);

/**
 * One resilient WebSocket to the relay for one document: connects, says hello, keeps the
 * link honest with a heartbeat (so a half-open link is noticed within
 * heartbeatIntervalMs + heartbeatTimeoutMs), and reconnects with capped, jittered
 * exponential backoff — at once when the browser reports it is back online.
 *
 * Permission errors do not cause a reconnect storm: 'forbidden' and a bad document name stop
 * the link; 'unauthorized' retries only when the token is a function (it may mint a fresh
 * token), and then with backoff. `resume()` restarts a stopped link.
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

  constructor(private readonly options: RelayLinkOptions) {
    super();
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

  /** Starts (or restarts after `stop` or a fatal refusal) connecting. */
  start(): void {
    if (this.stopped === 'closed') return;
    this.stopped = null;
    this.backoff.reset();
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

  /** The relay proved the connection works (it answered our sync): the next failure starts backoff afresh. */
  healthy(): void {
    this.backoff.reset();
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
      if (attempt === this.attempt) this.retryLater();
      return;
    }
    // stop(), destroy() or another attempt happened while the token was being fetched.
    if (attempt !== this.attempt || this.stopped || this.socket || this.browserOffline) return;
    const url = `${this.options.url.replace(/\/+$/, '')}/${encodeURIComponent(this.options.docName)}`;
    let socket: WebSocketLike;
    try {
      socket = new this.options.WebSocket(url, token ? [CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token] : [CAPSYNC_PROTOCOL]);
    } catch (err) {
      this.emit('error', [new CapsyncError('unavailable', `cannot connect to ${this.options.url}: ${(err as Error).message}`, { cause: err })]);
      this.retryLater();
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
      socket.send(encodeMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: CLIENT_CAPABILITIES }));
      this.emit('open', [++this.connectionCount]);
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
    if (refusal) {
      this.emit('error', [refusal]);
      const retryable = refusal.code === 'unauthorized' && typeof this.options.token === 'function';
      if (FATAL_CLOSE_CODES.has(code) || (refusal.code === 'unauthorized' && !retryable)) {
        this.stopped = 'fatal';
        return;
      }
    }
    this.retryLater();
  }

  private retryLater(): void {
    if (this.stopped || this.retryTimer) return;
    this.setState('offline');
    if (this.browserOffline) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connectNow();
    }, this.backoff.next());
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
    this.backoff.reset();
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

/** The typed error a relay's close code stands for, when it is a refusal the app must see. */
function refusalFor(code: number, reason: string): CapsyncError | null {
  const errorCode = errorCodeFromReason(reason);
  const detail = reason || `closed with code ${code}`;
  switch (code) {
    case CloseCode.Unauthorized:
      return new AuthError('unauthorized', detail);
    case CloseCode.Forbidden:
      return new AuthError('forbidden', detail);
    case CloseCode.InvalidDocName:
      return new CapsyncError('invalid-doc-name', detail);
    case CloseCode.BadMessage:
    case CloseCode.InvalidUpdate:
    case CloseCode.MessageTooBig:
    case CloseCode.UnsupportedData:
    case CloseCode.SlowConsumer:
    case CloseCode.StorageUnavailable:
    case CloseCode.InternalError:
      return new CapsyncError(errorCode ?? 'internal', detail);
    default:
      return null;
  }
}
