/**
 * The link of a forwarding relay to its lock authority: one link to the authority's lock
 * endpoint at a time, dialled through core's Dialer (the relay credential asked afresh per
 * attempt, the handshake timeout, the authority's hello checked, `ws` ping liveness, the one
 * Backoff), and rotated before its credential expires. What is sent on it, and which answer
 * belongs to which request, is ForwardedRequests' job (forwarded-requests.ts);
 * ForwardingLockBackend (forwarding-backend.ts) puts the two together.
 */
import { EventEmitter } from 'node:events';
import { CloseCode, Dialer, UnavailableError, decodeMessage, isCapsyncError, type DialedChannel, type LockReplyMessage, type Message } from '@capsync/core';
import type { Logger } from '../logger.js';
import { OutboundTransport } from '../relay/outbound-transport.js';
import type { SendBufferOptions } from '../relay/send-buffer.js';
import { authorityHello, expiryOf, refusalOf } from './authority-hello.js';
import { LOCKS_PATH } from './lock-connection.js';

/** One open link to the authority (it answered the hello): requests may be sent on it. */
export interface Link {
  readonly channel: DialedChannel;
  /** It closed, or was retired after a rotation: requests sent on it get no answer. */
  closed: boolean;
  readonly readyAt: number;
  /** When the credential this link was opened with expires (ms since epoch), if it says. */
  readonly credentialExpiresAt: number | undefined;
}

/** The link's state, for tests and operators: `up` once the authority answered the hello. */
export interface ForwardingLinkEvents {
  up: [];
  down: [reason: string];
  /** The link was replaced by one with a fresh credential before the old one expired. */
  rotated: [];
}

/** What the link tells the requests that go over it. */
export interface AuthorityLinkHandler {
  /** `link` answered the hello and is now the current link: send what waits. */
  ready(link: Link): void;
  /** The authority answered a request on `link`. */
  reply(link: Link, reply: LockReplyMessage): void;
  /**
   * `link` is closed (dropped, refused, or retired after a rotation), or, with null, an
   * attempt failed before any link: requests sent on it will get no answer. `refusal` is set
   * while the authority refuses this relay.
   */
  lost(link: Link | null, why: string): void;
  /** Requests sent on `link` and not answered yet (a rotated-out link closes once none are). */
  inflight(link: Link): number;
}

export interface AuthorityLinkOptions {
  /** Base URL of the authority relay, without a trailing slash. */
  url: string;
  /** The credential presented to the authority, asked for before every connection. */
  token: () => Promise<string | undefined>;
  /** Bounds a connection attempt (TCP, upgrade and hello), and the silence after a ping past which a link counts as dead. */
  opTimeoutMs: number;
  heartbeatMs: number;
  reconnect: { baseMs: number; maxMs: number };
  /** The link's send-buffer bounds (the relay's, as for any socket it has). */
  outbound: SendBufferOptions;
  relayId: string;
  logger: Logger;
  /** The backoff's jitter source (tests pin it); default Math.random. */
  random?: () => number;
}

/** A link is rotated this long before its credential expires (at most; a quarter of a short lifetime). */
const ROTATE_BEFORE_MS = 90_000;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The largest frame taken from the authority: lock replies are small. */
const MAX_REPLY_BYTES = 1024 * 1024;
/** The authority refused this relay's credential at the door. */
const REFUSED_CODES = new Set<number>([CloseCode.Unauthorized, CloseCode.Forbidden]);

/** One Dialer and what its attempts learned: the main one, or a rotation's successor. */
interface Dialling {
  readonly dialer: Dialer;
  /** Dials a rotation's successor (until its link opens and it becomes the main one). */
  successor: boolean;
  /** Expiry of the credential of the attempt under way (the link opened with it). */
  expiresAt: number | undefined;
  /** The attempt under way refused the authority's hello, why. */
  helloRefusal: string | undefined;
  /** The last attempt's or link's close was of an open link (not a refusal at the door). */
  closedOpen: boolean;
  /** The transport's error (ECONNREFUSED...), for the reason of a close that says none. */
  transportError: string;
}

/**
 * The connection manager (see the file comment). Contract:
 * - `current` is the link requests go out on; a rotation dials a successor with a fresh
 *   credential (a second Dialer) and moves requests to it once it answers the hello, while the
 *   old link drains (it closes when `inflight` reaches 0, see `settled`). If the current link
 *   ends first, the successor's dialer carries on as the main one.
 * - While the authority refuses this relay (close 4401/4403 at connect, or a hello without
 *   `locks`, or one from a relay that forwards its locks itself), `refusal` is set and every
 *   attempt goes on at the capped backoff.
 * - Every link that closes is reported once to the handler (`lost`), and every failed attempt
 *   (`lost(null)`). A link that stayed up at least `reconnect.maxMs` starts the backoff over;
 *   one that flaps does not.
 */
export class AuthorityLink {
  readonly events = new EventEmitter<ForwardingLinkEvents>();
  private readonly log: Logger;
  private main: Dialling | null = null;
  private successor: Dialling | null = null;
  private current: Link | null = null;
  /** Rotated-out links still answering, and the dialers they came from. */
  private readonly draining = new Map<Link, Dialling>();
  private rotateTimer: NodeJS.Timeout | null = null;
  /** Set while the authority refuses this relay: requests fail at once. */
  private refused: UnavailableError | null = null;
  private error = 'not connected yet';
  /** An outage was logged (one warning per outage, not one per attempt). */
  private outage = false;
  private everUp = false;
  private closed = false;

  constructor(
    private readonly o: AuthorityLinkOptions,
    private readonly handler: AuthorityLinkHandler,
  ) {
    this.log = o.logger;
  }

  /** The link requests may be sent on now, if any. */
  get ready(): Link | null {
    return this.current && !this.current.closed ? this.current : null;
  }

  /** Why requests fail at once (the authority refuses this relay), or null. */
  get refusal(): UnavailableError | null {
    return this.refused;
  }

  /** Why the last link failed, for the errors of requests that waited for one. */
  get lastError(): string {
    return this.error;
  }

  /** Starts dialling unless it is (the Dialer then keeps a link up, reconnecting with backoff). */
  ensureConnecting(): void {
    if (this.closed || this.main) return;
    this.main = this.dial(false);
  }

  send(link: Link, bytes: Uint8Array): void {
    link.channel.send(bytes);
  }

  /** A request on `link` was answered or given up: a draining link with none left closes. */
  settled(link: Link): void {
    if (this.draining.has(link) && this.handler.inflight(link) === 0) this.retire(link);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.rotateTimer) clearTimeout(this.rotateTimer);
    // Dropped at once (no closing handshake to wait for while the relay stops); each open link
    // reports its close (`lost`).
    for (const link of [this.current, ...this.draining.keys()]) link?.channel.terminate();
    for (const d of [this.main, this.successor, ...this.draining.values()]) d?.dialer.destroy('closing');
    this.main = this.successor = this.current = null;
    this.draining.clear();
  }

  /** A Dialer to the authority's lock endpoint; `first`, a credential already fetched, is its first attempt's. */
  private dial(successor: boolean, first?: { token: string | undefined }): Dialling {
    const { url, relayId, opTimeoutMs, heartbeatMs, outbound } = this.o;
    let prefetched = first;
    const credential = async (): Promise<string | undefined> => {
      d.helloRefusal = undefined;
      d.transportError = '';
      let token: string | undefined;
      if (prefetched) token = prefetched.token;
      else {
        try {
          token = await this.o.token();
        } catch (err) {
          this.error = `getting the relay credential failed: ${(err as Error).message}`;
          this.log.error({ err }, 'getting the relay credential for the lock authority failed');
          throw err;
        }
      }
      prefetched = undefined;
      d.expiresAt = expiryOf(token);
      return token;
    };
    const dialer = new Dialer({
      urls: [url],
      path: LOCKS_PATH,
      credential,
      connect: (target, protocols, opened) =>
        new OutboundTransport(target, protocols, opened, { outbound, maxPayload: MAX_REPLY_BYTES, error: (err) => (d.transportError = err.message) }),
      backoff: this.o.reconnect,
      ...(this.o.random ? { random: this.o.random } : {}),
      liveness: { kind: 'transport-ping', intervalMs: heartbeatMs, timeoutMs: opTimeoutMs },
      handshakeTimeoutMs: opTimeoutMs,
      hello: authorityHello(relayId),
      expectHello: (hello) => {
        const why = refusalOf(hello, url);
        if (!why) return null;
        d.helloRefusal = why;
        return new UnavailableError(why);
      },
      retryUnauthorized: true,
      // Its configuration says this is the authority: the relay keeps asking whatever it
      // answers, at the capped backoff while it refuses this relay.
      refusalAction: (code) => (d.helloRefusal || (!d.closedOpen && REFUSED_CODES.has(code)) ? 'retry-slowly' : 'retry'),
      unrefTimers: true,
    });
    const d: Dialling = { dialer, successor, expiresAt: undefined, helloRefusal: undefined, closedOpen: false, transportError: '' };
    dialer.on('open', ({ channel }) => this.opened(d, channel));
    dialer.on('close', ({ code, reason, opened }) => {
      d.closedOpen = opened;
      if (!opened) this.attemptFailed(d, code, reason);
    });
    dialer.start();
    return d;
  }

  private opened(d: Dialling, channel: DialedChannel): void {
    const link: Link = { channel, closed: false, readyAt: performance.now(), credentialExpiresAt: d.expiresAt };
    channel.attach({
      message: (bytes) => this.onData(link, bytes),
      close: (code, reason) => this.linkClosed(d, link, code, reason || d.transportError || `closed (${code})`),
      error: (err) => {
        this.log.warn({ err: err.message }, 'the lock authority sent a malformed frame; dropping the link');
        link.channel.close(CloseCode.BadMessage, 'malformed frame from the lock authority');
      },
    });
    this.refused = null;
    const previous = this.current;
    this.current = link;
    if (d === this.successor && previous && !previous.closed && this.main) {
      // Rotation: new requests go to the new link; the old one closes once it has answered.
      this.draining.set(previous, this.main);
      this.main = d;
      this.successor = null;
      d.successor = false;
      if (this.handler.inflight(previous) === 0) this.retire(previous);
      this.log.debug('lock authority link rotated (fresh credential)');
      this.events.emit('rotated');
    } else {
      if (this.outage || this.everUp) this.log.info('lock authority link up');
      else this.log.info('connected to the lock authority');
      this.outage = false;
    }
    this.everUp = true;
    this.scheduleRotation(link);
    this.handler.ready(link);
    this.events.emit('up');
  }

  private onData(link: Link, data: Uint8Array): void {
    if (link.closed) return;
    let msg: Message;
    try {
      msg = decodeMessage(data);
    } catch (err) {
      // A message kind this version does not know (a newer authority): not ours to answer.
      if (isCapsyncError(err) && err.code === 'unknown-message-type') return;
      this.log.warn({ err: (err as Error).message }, 'the lock authority sent a malformed frame; dropping the link');
      link.channel.close(CloseCode.BadMessage, 'malformed frame from the lock authority');
      return;
    }
    if (msg.type === 'lock-reply') this.handler.reply(link, msg);
  }

  /** An attempt ended before the authority answered the hello (unreachable, or refused). */
  private attemptFailed(d: Dialling, code: number, reason: string): void {
    if (this.closed) return;
    const why = d.helloRefusal ?? (reason || d.transportError || `closed (${code})`);
    if (d.helloRefusal) {
      // Logged once, not at every attempt.
      if (!this.refused || d.successor) this.log.error({ reason: why }, 'the lock authority refused this relay; lock requests answer unavailable');
      if (!d.successor) {
        this.refused = new UnavailableError(`lock authority refused this relay: ${why}`);
        this.outage = true;
      }
    } else if (REFUSED_CODES.has(code)) {
      // Refused at the door: waiting for this link cannot help, so requests fail at once until
      // a later attempt (at the capped backoff) is accepted. A rotation's successor refused
      // leaves the current link in service.
      if (!this.outage || d.successor) this.log.error({ code, reason: why }, "the lock authority refused this relay's credential");
      if (!d.successor) {
        this.refused = new UnavailableError(`lock authority ${this.o.url} refused this relay's credential (${why}); do the relays share --auth-secret?`);
        this.outage = true;
      }
    } else if (!this.outage && !d.successor) {
      this.log.warn({ reason: why }, 'cannot reach the lock authority; retrying (lock requests answer unavailable meanwhile)');
      this.outage = true;
    }
    this.error = why;
    this.handler.lost(null, why);
  }

  /** An open link closed (whoever closed it; a retired one was reported already). */
  private linkClosed(d: Dialling, link: Link, code: number, why: string): void {
    if (link.closed) return;
    link.closed = true;
    if (this.draining.delete(link)) {
      // A drained link's dialer is done: it must not dial again.
      d.dialer.destroy('replaced by a link with a fresh credential');
      this.handler.lost(link, why);
      return;
    }
    if (this.current === link) this.current = null;
    if (!this.closed) {
      this.log.warn({ code, reason: why }, 'lost the link to the lock authority; reconnecting');
      this.outage = true;
      this.error = why;
    }
    // What was sent on it is the requests' business (repeated on the next link, or failed).
    this.handler.lost(link, why);
    if (this.closed) return;
    this.events.emit('down', why);
    // A link that stayed up a while starts the backoff over; one that flaps does not.
    if (performance.now() - link.readyAt >= this.o.reconnect.maxMs) d.dialer.healthy();
    if (this.successor && d === this.main) {
      // A rotation was dialling: its dialer, with a fresh credential, is the one to go on.
      d.dialer.destroy('replaced by a link with a fresh credential');
      this.main = this.successor;
      this.main.successor = false;
      this.successor = null;
    }
  }

  private scheduleRotation(link: Link): void {
    if (this.rotateTimer) clearTimeout(this.rotateTimer);
    this.rotateTimer = null;
    if (link.credentialExpiresAt === undefined) return;
    const remaining = link.credentialExpiresAt - Date.now();
    const at = Math.max(0, remaining - Math.min(ROTATE_BEFORE_MS, remaining / 4));
    // setTimeout takes at most 2^31 - 1 ms: a credential valid for longer is looked at again then.
    this.rotateTimer = setTimeout(() => {
      this.rotateTimer = null;
      if (this.current !== link || link.closed) return;
      if (at > MAX_TIMER_MS) this.scheduleRotation(link);
      else this.rotate(link);
    }, Math.min(at, MAX_TIMER_MS));
    this.rotateTimer.unref();
  }

  /** Dials a successor of `link` with a fresh credential, if the credential is renewed. */
  private rotate(link: Link): void {
    const wanted = () => !this.closed && !this.successor && this.current === link && !link.closed;
    this.o.token().then(
      (token) => {
        if (!wanted()) return;
        const expiresAt = expiryOf(token);
        if (expiresAt === undefined || (link.credentialExpiresAt !== undefined && expiresAt <= link.credentialExpiresAt)) {
          // Same credential (an explicit peer token): a new link would expire just the same.
          this.log.warn('the relay credential is not renewed: the lock authority will close the link when it expires');
          return;
        }
        this.successor = this.dial(true, { token });
      },
      (err: unknown) => {
        this.error = `getting the relay credential failed: ${(err as Error).message}`;
        this.log.error({ err }, 'getting the relay credential for the lock authority failed');
      },
    );
  }

  /** A drained link (rotation) has nothing left in flight: close it normally. */
  private retire(link: Link): void {
    const d = this.draining.get(link);
    this.draining.delete(link);
    link.closed = true;
    // Closing withdraws at the authority whatever still waits there for this link.
    this.handler.lost(link, 'replaced by a link with a fresh credential');
    d?.dialer.destroy('replaced by a link with a fresh credential');
  }
}
