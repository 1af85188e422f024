import {
  QuietObservable,
  CloseCode,
  Dialer,
  OWNER_KEY_PREFIX,
  decodeMessage,
  dialWebSocket,
  encodeMessage,
  helloFor,
  type BackoffOptions,
  type CapsyncError,
  type Channel,
  type DialerOptions,
  type DialState,
  type DialedChannel,
  type Message,
} from '@capsync/core';
import { browserNetwork } from './browser-network.js';
import { relayUrlList } from './relay-urls.js';
import type { WebSocketConstructor } from './websocket-like.js';

export type LinkState = DialState;
export type TokenSource = string | (() => string | Promise<string>);

export interface RelayLinkOptions {
  /**
   * Relay base URLs, ws:// or wss://, tried in this order and then round robin (see Dialer);
   * the document name is appended as the path. At least one.
   */
  urls: readonly string[];
  docName: string;
  /**
   * The guid of a Yjs subdocument of `docName` this link is for: a session on the multiplexed
   * socket only (SessionLink; a RelayLink has no subdocuments, see subdocs.ts).
   */
  subdoc?: string;
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
   * relays), `url` is the relay base URL it went to (also `currentUrl`). The link's user attaches
   * to `channel` (a DocSession, or decodeFromRelay): every frame of the relay arrives there
   * (frames wait for the attach), until the channel's close, which comes before the link's
   * 'close'. `send` goes on the same channel.
   */
  open: (connection: number, url: string, channel: Channel) => void;
  /** The current socket is gone (closed, failed, or declared dead by the heartbeat). */
  close: (info: { code: number; reason: string }) => void;
  /** Something the app should know: auth refused, bad close codes, token errors. */
  error: (err: CapsyncError) => void;
}

/**
 * One resilient WebSocket to a relay for one document (or the lock endpoint): the client's
 * Dialer — URL list with failover, a token per attempt, hello, heartbeat (app-level pings: a
 * half-open link is noticed within heartbeatIntervalMs + heartbeatTimeoutMs), backoff, the
 * browser's online/offline events, refusals (see Dialer for the contract) — with messages
 * handed to its user as a Channel ('open'). `send` encodes a message onto it.
 *
 * Permission errors do not cause a reconnect storm: 'forbidden', a bad document name and an
 * incompatible protocol version stop the link (they would be refused everywhere);
 * 'unauthorized' retries only when the token is a function (it may mint a fresh token), and
 * then with backoff; everything else (not-owner, a fenced-area refusal, limits) is retried
 * with backoff (core refusals.ts). `start()` restarts a stopped link.
 */
export class RelayLink extends QuietObservable<RelayLinkEvents> {
  private readonly dialer: Dialer;
  private channel: DialedChannel | null = null;

  constructor(options: RelayLinkOptions) {
    super();
    const { ownerHandles } = options;
    this.dialer = new Dialer({
      ...clientDialerOptions(options, encodeURIComponent(options.docName)),
      hello: () => helloFor('client', [...(options.ownerKey ? [OWNER_KEY_PREFIX + options.ownerKey] : []), ...(options.helloCapabilities?.() ?? [])]),
      refusalAction: ownerHandles ? (code, _refusal, reason) => (ownerHandles(code, reason) ? 'handled' : undefined) : undefined,
    });
    this.dialer.on('state', (state) => this.emit('state', [state]));
    this.dialer.on('open', ({ channel, connection, url }) => {
      this.channel = channel;
      this.emit('open', [connection, url, channel]);
    });
    this.dialer.on('close', ({ code, reason }) => {
      this.channel = null;
      this.emit('close', [{ code, reason }]);
    });
    this.dialer.on('error', (err) => this.emit('error', [err]));
  }

  get state(): LinkState {
    return this.dialer.state;
  }

  /** Base URL of the relay the link is on (open or connecting), or that its next attempt goes to. */
  get currentUrl(): string {
    return this.dialer.currentUrl;
  }

  /** Starts (or restarts after `stop` or a fatal refusal) connecting, to the current relay. */
  start(): void {
    this.dialer.start();
  }

  /** Closes the socket and stays offline until `start`. */
  stop(): void {
    this.dialer.stop('client disconnected');
  }

  /** Sends a message if the socket is open; returns false otherwise. */
  send(msg: Message): boolean {
    const channel = this.channel;
    if (!channel?.writable) return false;
    channel.send(encodeMessage(msg));
    return true;
  }

  /**
   * The relay proved the connection works (it answered our sync): the next failure starts a
   * new round of the relay list with the backoff afresh.
   */
  healthy(): void {
    this.dialer.healthy();
  }

  override destroy(): void {
    this.dialer.destroy('client closed');
    super.destroy();
  }
}

/**
 * The Dialer options every link of a client shares (a document's socket, the lock client's,
 * the multiplexed socket): its URLs, a token per attempt, a WebSocket, app-level heartbeat,
 * backoff, the browser's network events. The caller adds its hello and refusal policy.
 */
export function clientDialerOptions(
  options: Pick<RelayLinkOptions, 'urls' | 'WebSocket' | 'token' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs' | 'backoff' | 'random'>,
  path: string,
): Omit<DialerOptions, 'hello'> {
  const token = options.token;
  return {
    urls: relayUrlList(options.urls),
    path,
    credential: typeof token === 'function' ? token : () => token,
    connect: (url, protocols, opened) => dialWebSocket(new options.WebSocket(url, protocols), opened),
    backoff: options.backoff,
    random: options.random,
    liveness: { kind: 'app-ping', intervalMs: options.heartbeatIntervalMs, timeoutMs: options.heartbeatTimeoutMs },
    handshakeTimeoutMs: options.heartbeatTimeoutMs,
    retryUnauthorized: typeof token === 'function',
    // A token function is asked for a fresh token before the current one expires, sent on the
    // open socket to a relay that takes it (no reconnect, no resync; see core token-refresh.ts).
    refreshCredential: typeof token === 'function',
    network: browserNetwork(),
  };
}

/** Decodes a message of the relay; an undecodable one is reported and closes `channel` with 4400 (null). */
export function decodeFromRelay(channel: Channel, bytes: Uint8Array, error: (err: CapsyncError) => void): Message | null {
  try {
    return decodeMessage(bytes);
  } catch (err) {
    error(err as CapsyncError);
    channel.close(CloseCode.BadMessage, 'bad-message: undecodable frame from relay');
    return null;
  }
}
