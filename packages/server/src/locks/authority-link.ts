/**
 * The link of a forwarding relay to its lock authority: one WebSocket to the authority's lock
 * endpoint at a time, opened with the relay credential, kept alive with pings, reopened with
 * backoff when it drops, and rotated before its credential expires. What is sent on it, and
 * which answer belongs to which request, is ForwardedRequests' job (forwarded-requests.ts);
 * ForwardingLockBackend (forwarding-backend.ts) puts the two together.
 */
import { EventEmitter } from 'node:events';
import { Backoff, CloseCode, UnavailableError, decodeMessage, encodeMessage, isCapsyncError, type LockReplyMessage, type Message } from '@capsync/core';
import type { Logger } from '../logger.js';
import { LOCKS_PATH } from './lock-connection.js';
import { authorityHello, expiryOf, openAuthoritySocket, refusalOf, toBytes, type Link } from './authority-socket.js';

export type { Link } from './authority-socket.js';

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
   * `link` is closed (dropped, refused, or retired after a rotation): requests sent on it
   * will get no answer. `refusal` is set while the authority refuses this relay.
   */
  lost(link: Link, why: string): void;
  /** Requests sent on `link` and not answered yet (a rotated-out link closes once none are). */
  inflight(link: Link): number;
}

export interface AuthorityLinkOptions {
  /** Base URL of the authority relay, without a trailing slash. */
  url: string;
  /** The credential presented to the authority, asked for before every connection. */
  token: () => Promise<string | undefined>;
  /** Bounds a connection attempt (TCP, upgrade and hello), and the silence after which a link counts as dead. */
  opTimeoutMs: number;
  heartbeatMs: number;
  reconnect: { baseMs: number; maxMs: number };
  relayId: string;
  logger: Logger;
}

/** A link is rotated this long before its credential expires (at most; a quarter of a short lifetime). */
const ROTATE_BEFORE_MS = 90_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The connection manager (see the file comment). Contract:
 * - `current` is the link requests go out on once it is `ready`; a rotation opens a successor
 *   and moves requests to it once it answers the hello, while the old link drains (it closes
 *   when `inflight` reaches 0, see `settled`).
 * - While the authority refuses this relay (close 4401/4403 at connect, or a hello without
 *   `locks`, or one from a relay that forwards its locks itself), `refusal` is set and every
 *   attempt goes on at the capped backoff.
 * - Every link that closes is reported once to the handler (`lost`).
 */
export class AuthorityLink {
  readonly events = new EventEmitter<ForwardingLinkEvents>();
  private readonly endpoint: string;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private current: Link | null = null;
  /** A link being opened (the first, a reconnect, or a rotation's successor). */
  private opening: Link | null = null;
  private connecting = false;
  private readonly draining = new Set<Link>();
  private reconnectTimer: NodeJS.Timeout | null = null;
  private rotateTimer: NodeJS.Timeout | null = null;
  /** Set while the authority refuses this relay: requests fail at once. */
  private refused: UnavailableError | null = null;
  private error = 'not connected yet';
  /** An outage was logged (one warning per outage, not one per attempt). */
  private outage = false;
  private closed = false;

  constructor(
    private readonly o: AuthorityLinkOptions,
    private readonly handler: AuthorityLinkHandler,
  ) {
    this.endpoint = `${o.url}/${LOCKS_PATH}`;
    this.log = o.logger;
    this.backoff = new Backoff(o.reconnect);
  }

  /** The link requests may be sent on now, if any. */
  get ready(): Link | null {
    return this.current?.ready ? this.current : null;
  }

  /** Why requests fail at once (the authority refuses this relay), or null. */
  get refusal(): UnavailableError | null {
    return this.refused;
  }

  /** Why the last link failed, for the errors of requests that waited for one. */
  get lastError(): string {
    return this.error;
  }

  /** Opens a link unless one is open or being opened (or a reconnect is scheduled). */
  ensureConnecting(): void {
    if (this.closed || this.connecting || this.reconnectTimer || (this.current && !this.current.closed)) return;
    this.openLink(false);
  }

  send(link: Link, bytes: Uint8Array): void {
    link.ws.send(bytes);
  }

  /** A request on `link` was answered or given up: a draining link with none left closes. */
  settled(link: Link): void {
    if (this.draining.has(link) && this.handler.inflight(link) === 0) this.retire(link);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.rotateTimer) clearTimeout(this.rotateTimer);
    for (const link of [this.current, this.opening, ...this.draining]) if (link) this.dropLink(link, 'closing');
    this.current = this.opening = null;
    this.draining.clear();
  }

  /** Opens a link: the first one, a reconnect, or (`successor`) the replacement of the current one. */
  private openLink(successor: boolean): void {
    if (this.closed || this.connecting) return;
    this.connecting = true;
    void this.o.token().then(
      (token) => this.dial(token, successor),
      (err: unknown) => {
        this.connecting = false;
        this.error = `getting the relay credential failed: ${(err as Error).message}`;
        this.log.error({ err }, 'getting the relay credential for the lock authority failed');
        if (!successor) this.scheduleReconnect();
      },
    );
  }

  private dial(token: string | undefined, successor: boolean): void {
    if (this.closed) {
      this.connecting = false;
      return;
    }
    const credentialExpiresAt = expiryOf(token);
    if (successor) {
      const cur = this.current;
      if (!cur || cur.closed) successor = false;
      else if (credentialExpiresAt === undefined || (cur.credentialExpiresAt !== undefined && credentialExpiresAt <= cur.credentialExpiresAt)) {
        // Same credential (an explicit peer token): a new link would expire just the same.
        this.connecting = false;
        this.log.warn('the relay credential is not renewed: the lock authority will close the link when it expires');
        return;
      }
    }
    const ws = openAuthoritySocket(this.endpoint, token, this.o.opTimeoutMs);
    const link: Link = { ws, ready: false, readyAt: 0, closed: false, lastHeard: performance.now(), credentialExpiresAt, lastError: '', timers: [], successor };
    this.opening = link;
    // TCP connect, upgrade and hello must all fit in one operation's deadline (a held link
    // accepts the TCP connection and then says nothing).
    link.timers.push(
      setTimeout(() => {
        if (link.ready) return;
        link.lastError = `no answer to the hello within ${this.o.opTimeoutMs} ms`;
        this.dropLink(link, link.lastError);
      }, this.o.opTimeoutMs),
    );
    ws.on('open', () => {
      link.lastHeard = performance.now();
      ws.send(encodeMessage(authorityHello(this.o.relayId)));
    });
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => this.onData(link, toBytes(data), isBinary));
    ws.on('pong', () => (link.lastHeard = performance.now()));
    ws.on('error', (err: Error) => (link.lastError = err.message));
    ws.on('close', (code: number, reason: Buffer) => this.onClosed(link, code, reason.toString()));
  }

  private onData(link: Link, data: Uint8Array, isBinary: boolean): void {
    if (link.closed) return;
    link.lastHeard = performance.now();
    let msg: Message;
    try {
      if (!isBinary) throw new Error('text frame');
      msg = decodeMessage(data);
    } catch (err) {
      // A message kind this version does not know (a newer authority): not ours to answer.
      if (isCapsyncError(err) && err.code === 'unknown-message-type') return;
      this.log.warn({ err: (err as Error).message }, 'the lock authority sent a malformed frame; dropping the link');
      this.dropLink(link, 'malformed frame from the lock authority');
      return;
    }
    if (msg.type === 'lock-reply') this.handler.reply(link, msg);
    else if (msg.type === 'hello' && !link.ready) this.onHello(link, msg);
  }

  private onHello(link: Link, hello: { protocolVersion: number; capabilities: string[] }): void {
    const refusal = refusalOf(hello, this.o.url);
    if (refusal) return this.refuse(link, refusal);
    for (const t of link.timers.splice(0)) clearTimeout(t);
    link.ready = true;
    link.readyAt = performance.now();
    if (this.opening === link) this.opening = null;
    this.connecting = false;
    this.refused = null;
    const previous = this.current;
    this.current = link;
    if (previous && previous !== link && !previous.closed) {
      // Rotation: new requests go to the new link; the old one closes once it has answered.
      this.draining.add(previous);
      if (this.handler.inflight(previous) === 0) this.retire(previous);
      this.log.debug('lock authority link rotated (fresh credential)');
      this.events.emit('rotated');
    } else {
      if (this.outage || this.backoff.attempts > 0) this.log.info('lock authority link up');
      else this.log.info('connected to the lock authority');
      this.outage = false;
    }
    const heartbeat = setInterval(() => this.heartbeat(link), this.o.heartbeatMs);
    heartbeat.unref();
    link.timers.push(heartbeat);
    this.scheduleRotation(link);
    this.handler.ready(link);
    this.events.emit('up');
  }

  /** The authority will not serve this relay: fail what waits, keep retrying slowly. */
  private refuse(link: Link, why: string): void {
    // Logged once, not at every attempt.
    if (!this.refused || link.successor) this.log.error({ reason: why }, 'the lock authority refused this relay; lock requests answer unavailable');
    if (!link.successor) {
      this.refused = new UnavailableError(`lock authority refused this relay: ${why}`);
      this.outage = true;
    }
    link.lastError = why;
    this.backoff.saturate(); // retry at the capped backoff
    this.dropLink(link, why);
  }

  private heartbeat(link: Link): void {
    if (link.closed) return;
    const silentMs = performance.now() - link.lastHeard;
    if (silentMs > this.o.opTimeoutMs + this.o.heartbeatMs) {
      this.log.warn({ silentMs: Math.round(silentMs) }, 'the lock authority link went silent; dropping it');
      this.dropLink(link, `no answer from the lock authority for ${Math.round(silentMs)} ms`);
      return;
    }
    try {
      link.ws.ping();
    } catch {
      // Not open any more: 'close' follows.
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
      else this.openLink(true);
    }, Math.min(at, MAX_TIMER_MS));
    this.rotateTimer.unref();
  }

  /** Closes a link at once (its close event does the bookkeeping). */
  private dropLink(link: Link, why: string): void {
    if (!link.lastError) link.lastError = why;
    try {
      link.ws.terminate();
    } catch {
      // Never opened: nothing to end.
    }
    // terminate() emits 'close' asynchronously (or not at all before the socket exists).
    this.onClosed(link, 1006, why);
  }

  /** A drained link (rotation) has nothing left in flight: close it normally. */
  private retire(link: Link): void {
    this.draining.delete(link);
    link.closed = true;
    for (const t of link.timers.splice(0)) clearTimeout(t);
    // Closing withdraws at the authority whatever still waits there for this link.
    this.handler.lost(link, 'replaced by a link with a fresh credential');
    try {
      link.ws.close(CloseCode.Normal, 'replaced by a link with a fresh credential');
    } catch {
      link.ws.terminate();
    }
  }

  private onClosed(link: Link, code: number, reason: string): void {
    if (link.closed) return;
    link.closed = true;
    for (const t of link.timers.splice(0)) clearTimeout(t);
    const wasReady = link.ready;
    const why = reason || link.lastError || `closed (${code})`;
    if (this.opening === link) {
      this.opening = null;
      this.connecting = false;
    }
    this.draining.delete(link);
    const wasCurrent = this.current === link;
    if (wasCurrent) this.current = null;

    if (!wasReady && (code === CloseCode.Unauthorized || code === CloseCode.Forbidden)) {
      // Refused at the door: waiting for this link cannot help, so requests fail at once until
      // a later attempt (at the capped backoff) is accepted. A rotation's successor refused
      // leaves the current link in service.
      if (!this.outage || link.successor) this.log.error({ code, reason: why }, "the lock authority refused this relay's credential");
      if (!link.successor) {
        this.refused = new UnavailableError(`lock authority ${this.o.url} refused this relay's credential (${why}); do the relays share --auth-secret?`);
        this.outage = true;
      }
      this.backoff.saturate();
    }
    if (!this.closed) {
      if (wasReady && wasCurrent) {
        this.log.warn({ code, reason: why }, 'lost the link to the lock authority; reconnecting');
        this.outage = true;
      } else if (!wasReady && !this.outage && !link.successor) {
        this.log.warn({ reason: why }, 'cannot reach the lock authority; retrying (lock requests answer unavailable meanwhile)');
        this.outage = true;
      }
      this.error = why;
    }

    // What was sent on it is the requests' business (repeated on the next link, or failed).
    this.handler.lost(link, why);

    if (this.closed) return;
    if (wasReady && wasCurrent) {
      this.events.emit('down', why);
      // A link that stayed up a while starts the backoff over; one that flaps does not.
      if (performance.now() - link.readyAt >= this.o.reconnect.maxMs) this.backoff.reset();
    }
    if (this.current && !this.current.closed) {
      // A rotation's successor failed (or a drained link closed): the current link goes on.
      if (link.successor && !wasReady) this.retryRotation();
      return;
    }
    this.scheduleReconnect();
  }

  private retryRotation(): void {
    const cur = this.current;
    if (!cur || this.rotateTimer) return;
    this.rotateTimer = setTimeout(() => {
      this.rotateTimer = null;
      if (this.current === cur && !cur.closed) this.openLink(true);
    }, this.backoff.next());
    this.rotateTimer.unref();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer || this.connecting) return;
    if (this.current && !this.current.closed) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.openLink(false);
    }, this.backoff.next());
    this.reconnectTimer.unref();
  }
}
