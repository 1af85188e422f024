import type { CapsyncError } from '../errors.js';
import type { HelloMessage } from '../protocol/message-types.js';
import type { BackoffOptions } from './backoff.js';
import type { Channel } from './channel.js';
import type { Liveness } from './liveness.js';
import type { RefusalAction } from './refusals.js';

/** The options, the link and the events of a Dialer (dialer.ts), with the contract of each. */

/** The WebSocket sub-protocol every capsync link offers. */
export const CAPSYNC_PROTOCOL = 'capsync';
/** Sub-protocol prefix carrying a credential: `capsync.jwt.<token>` (browsers cannot set headers on WebSockets). */
export const TOKEN_PROTOCOL_PREFIX = 'capsync.jwt.';

export type DialState = 'offline' | 'connecting' | 'open';

/** What `connect` returns: a Channel whose transport may still be connecting. */
export interface DialTransport extends Channel {
  /** False while a send would be dropped (the transport is closing); absent means true. */
  readonly writable?: boolean;
  /** A transport-level probe (a `ws` ping frame); `pong` runs when it is answered. Needed by liveness 'transport-ping'. */
  ping?(pong: () => void): void;
}

/** The network as the platform reports it (a browser's online/offline events). */
export interface NetworkStatus {
  readonly offline: boolean;
  /** Calls `online`/`offline` on every change until the returned function is called. */
  watch(online: () => void, offline: () => void): () => void;
}

/** How the dialer's own messages travel on a link that frames them (see DialerOptions.control). */
export interface ControlFraming {
  wrap(message: Uint8Array): Uint8Array;
  unwrap(frame: Uint8Array): Uint8Array | null;
}

export interface DialerOptions {
  /** Base URLs (ws:// or wss://), tried in this order and then round robin. At least one. */
  urls: readonly string[];
  /** Appended to a base URL after a '/', as given (encode a document name first; a query may follow). */
  path: string;
  /** Asked before every attempt (a token string, a token function, a relay credential). A throw fails that attempt. */
  credential?: () => string | undefined | Promise<string | undefined>;
  /**
   * Starts one attempt: returns its transport at once (still connecting) and calls `opened`
   * once it can carry messages. A failed attempt is reported as the transport's close. A
   * throw (a malformed URL) fails the attempt. In tests: one side of a `channelPair`.
   */
  connect(url: string, protocols: string[], opened: () => void): DialTransport;
  backoff: BackoffOptions;
  /** Injectable for tests (backoff jitter and the spread between relays). */
  random?: () => number;
  /** The least delay before the next attempt after the other side closed with this code (e.g. 4429 → 1000). */
  minDelayAfter?: Partial<Record<number, number>>;
  liveness: Liveness;
  /** Bounds an attempt: the transport's connect, plus the other side's hello when `expectHello` is set. */
  handshakeTimeoutMs: number;
  /** Our hello, the first message on every link (a function is asked per link: declared writers change). */
  hello: HelloMessage | (() => HelloMessage);
  /**
   * Set to wait for the other side's hello before the link counts as open (it is then in the
   * 'open' event, not passed on); returns why the link is refused (the other side lacks a
   * capability), or null. Unset: the link is open once the transport is, and hellos pass on.
   */
  expectHello?: (hello: HelloMessage) => CapsyncError | null;
  /** An `unauthorized` refusal is retried (the credential may be fresh next time), else it stops the link. */
  retryUnauthorized: boolean;
  /** Overrides the refusal policy (see RefusalAction); undefined keeps the default (defaultRefusalAction). */
  refusalAction?: (code: number, refusal: CapsyncError, reason: string) => RefusalAction | undefined;
  /** Browsers: while offline no attempt is made; back online, the current URL is dialled at once. */
  network?: NetworkStatus;
  /**
   * Set when the link carries the frames of a multiplexed socket (mux-frame.ts): the dialer's
   * own messages (our hello and pings, the other side's hello and pongs) go on its control
   * session; `wrap` frames one for sending, `unwrap` returns a received control message, or
   * null for a frame of another session (passed on untouched). Unset: plain messages.
   */
  control?: ControlFraming;
  /**
   * Refresh the credential on the open link before it expires (a token function: a fixed token
   * cannot be refreshed), when the other side's hello lists TOKEN_REFRESH_CAPABILITY: see
   * token-refresh.ts. The other side's hello must pass through the dialer (it does on a plain
   * link and on a multiplexed socket's control session).
   */
  refreshCredential?: boolean;
  /** Node: timers do not keep the process alive (a relay's links). */
  unrefTimers?: boolean;
}

/** What one attempt uses of the options (DialAttempt, `dialOnce`): no URLs, retry or network. */
export type AttemptOptions = Pick<DialerOptions, 'path' | 'credential' | 'connect' | 'liveness' | 'handshakeTimeoutMs' | 'hello' | 'expectHello' | 'control' | 'refreshCredential'>;

/** A channel of one open link: a Channel, plus whether a send now would be carried. */
export interface DialedChannel extends Channel {
  readonly writable: boolean;
}

/** One open link. */
export interface DialedLink {
  readonly channel: DialedChannel;
  /** The other side's hello when `expectHello` waited for it, else null (it arrives on the channel). */
  readonly hello: HelloMessage | null;
  /** The base URL it went to. */
  readonly url: string;
  /** Numbers the links of this dialer from 1, across URLs. */
  readonly connection: number;
}

export interface DialerEvents {
  state: (state: DialState) => void;
  /** A link opened and our hello went out: attach to `link.channel` (frames wait for it). */
  open: (link: DialedLink) => void;
  /** An attempt or a link ended (whoever closed it); `opened` tells which. */
  close: (info: { code: number; reason: string; url: string; opened: boolean }) => void;
  /** What the owner should know: refusals (typed, see refusals.ts), a credential or connect that failed. */
  error: (err: CapsyncError) => void;
}
