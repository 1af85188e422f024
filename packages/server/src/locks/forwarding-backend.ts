import { EventEmitter } from 'node:events';
import * as jose from 'jose';
import WebSocket from 'ws';
import {
  CapsyncError,
  CloseCode,
  PROTOCOL_VERSION,
  RELAY_CAPABILITY,
  RELAY_ID_PREFIX,
  UnavailableError,
  decodeMessage,
  isCapsyncError,
  encodeMessage,
  errorFromCode,
  type LockOp,
  type LockReplyMessage,
  type LockRequestMessage,
  type Message,
} from '@capsync/core';
import type { Logger } from '../logger.js';
import type { AcquireRequest, LockBackend, LockBackendEvents, LockGrant } from './lock-backend.js';
import { LOCKS_PATH, LOCK_BACKEND_CAPABILITY } from './lock-connection.js';
import { redactUrl } from '../auth/url-token.js';

export interface ForwardingLockBackendOptions {
  /** Base URL of the authority relay (`ws://host:port`); its lock endpoint is `${url}/.capsync/locks`. */
  url: string;
  /** The credential presented to the authority, asked for before every connection (see relayCredential). */
  token: () => Promise<string | undefined>;
  /**
   * Deadline of one operation (an acquire gets its `waitMs` on top): past it the operation
   * rejects with UnavailableError. Also bounds a connection attempt, and the silence after
   * which a link counts as dead.
   */
  opTimeoutMs: number;
  logger: Logger;
  /** This relay's id, announced in the hello (the authority logs it). */
  relayId: string;
  /** How often the link is pinged (WebSocket ping frames). Default: opTimeoutMs / 2, 50 ms to 10 s. */
  heartbeatMs?: number;
  /** Reconnect backoff: first delay and cap. Default 50 ms, capped at opTimeoutMs / 2 (100 ms to 5 s). */
  reconnect?: { baseMs?: number; maxMs?: number };
}

/** The link's state, for tests and operators: `up` once the authority answered the hello. */
export interface ForwardingLinkEvents {
  up: [];
  down: [reason: string];
  /** The link was replaced by one with a fresh credential before the old one expired. */
  rotated: [];
}

/** A request sent, or waiting to be sent, to the authority. */
interface Pending {
  msg: LockRequestMessage;
  /** The link it was sent on; null while it waits for a link. */
  link: Link | null;
  /** Monotonic deadline (performance.now()). */
  deadline: number;
  timer: NodeJS.Timeout;
  resolve(reply: LockReplyMessage): void;
  reject(err: unknown): void;
  onAbort: (() => void) | null;
  signal: AbortSignal | undefined;
}

interface Link {
  ws: WebSocket;
  /** The authority answered the hello: requests may be sent. */
  ready: boolean;
  readyAt: number;
  closed: boolean;
  /** Last time anything (a frame or a pong) came from the authority. */
  lastHeard: number;
  /** When the credential this link was opened with expires (ms since epoch), if it says. */
  credentialExpiresAt: number | undefined;
  /** Requests sent on this link and not answered yet. */
  inflight: Set<Pending>;
  /** Why it failed, for the UnavailableError of requests that waited for it. */
  lastError: string;
  timers: NodeJS.Timeout[];
  /** Replaces the current link (credential rotation) instead of being the first one. */
  successor: boolean;
}

/** Operations that may be sent again on a new link when the one they went out on died. */
const IDEMPOTENT: ReadonlySet<LockOp> = new Set(['check', 'renew']);
/** A link is rotated this long before its credential expires (at most; a quarter of a short lifetime). */
const ROTATE_BEFORE_MS = 90_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A lock backend that forwards every operation to another relay's lock endpoint, where that
 * relay's own backend (its embedded one) is the single lock authority of the mesh
 * (`--lock-authority ws://host:port`). It holds no lease state of its own: every acquire,
 * renew, release and fencing `check` is one `lock-request` to the authority over one
 * WebSocket, authenticated with the relay credential, and its answer is the authority's.
 * Each request names the identity it is made for (`owner`), which the authority honours
 * because the link carries a relay credential: leases belong to the same identities as if the
 * clients were connected to the authority itself.
 *
 * How the LockBackend contract holds when forwarded:
 * - Grants, tokens, FIFO order, renewals, releases, checks and expiry are the authority's:
 *   waiters from every relay share its one queue (this relay sends in call order on one
 *   link, queued requests included), and tokens come from its one sequence.
 *   This backend resolves only with a reply from the authority, so it never grants (or
 *   confirms a lease, for a fenced write) anything the authority did not.
 * - `ttlMs` of a grant is the authority's, passed through unchanged: it counts from when the
 *   authority received the forwarded request, which is after this relay received the
 *   client's, which is after the client sent it. The client counts from its send time, so its
 *   deadline still comes first. Likewise a renewal runs from the authority's receipt.
 * - Deadlines: each operation rejects with UnavailableError `opTimeoutMs` after it was
 *   called (`waitMs + opTimeoutMs` for an acquire) unless the authority answered. A request
 *   made while the link is down waits for it up to that deadline (a reconnect is attempted at
 *   least every `opTimeoutMs / 2`, so an authority restart or a blip is ridden out), except
 *   while the authority refuses this relay: its credential (close 4401/4403 at connect), or
 *   because it forwards its locks itself (a loop). Then requests fail at once, with
 *   UnavailableError rather than an AuthError: the client's own credential is fine, the
 *   authority is what this client cannot use. Attempts go on at the capped backoff.
 * - A link that drops (or goes silent past `opTimeoutMs` plus a heartbeat: ping frames
 *   detect a half-open TCP link) fails what was sent on it: acquire and release reject with
 *   UnavailableError at once (their outcome is unknown; a lease granted meanwhile runs out by
 *   itself, and the authority withdraws waiting acquires of a connection that closed), while
 *   renew and check, which are safe to repeat, are sent again on the next link within their
 *   deadline. Nothing is remembered across links.
 * - An acquire whose caller gave up (deadline, or `signal` aborted) may still be granted at the
 *   authority: the late grant is released there at once, so it does not block the key.
 * - `expired` is never emitted here: leases expire at the authority, which counts them.
 * - The link is rotated (a new one opened with a fresh credential, then the old one drained)
 *   before the credential it was opened with expires (90 s before, or after three quarters
 *   of a short one), so the authority's expiry does not cut requests in flight. One still
 *   waiting on the old link when its credential expires (an acquire with a long `waitMs`)
 *   is cut like any other dropped request.
 */
export class ForwardingLockBackend extends EventEmitter<LockBackendEvents> implements LockBackend {
  readonly kind = 'forwarded' as const;
  /** Link state changes (for tests and monitoring). */
  readonly link = new EventEmitter<ForwardingLinkEvents>();
  readonly url: string;
  private readonly endpoint: string;
  private readonly opTimeoutMs: number;
  private readonly heartbeatMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly log: Logger;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Requests waiting for a link, in call order. */
  private readonly queue: Pending[] = [];
  /** Acquires whose caller gave up after they were sent: a grant that still comes is released. */
  private readonly late = new Map<number, { key: string; owner: string; link: Link }>();
  private current: Link | null = null;
  /** A link being opened (the first, a reconnect, or a rotation's successor). */
  private opening: Link | null = null;
  private connecting = false;
  private readonly draining = new Set<Link>();
  private reconnectTimer: NodeJS.Timeout | null = null;
  private rotateTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  /** Set while the authority refuses this relay's credential: requests fail at once. */
  private refused: UnavailableError | null = null;
  private lastError = 'not connected yet';
  /** An outage was logged (one warning per outage, not one per attempt). */
  private outage = false;
  private closed = false;

  private constructor(private readonly o: ForwardingLockBackendOptions) {
    super();
    if (!/^wss?:\/\/[^/]+/.test(o.url)) throw new CapsyncError('internal', `lock authority: "${o.url}" is not a ws(s) URL`);
    if (!(o.opTimeoutMs > 0)) throw new CapsyncError('internal', 'lock authority: opTimeoutMs must be positive');
    this.url = o.url.replace(/\/+$/, '');
    this.endpoint = `${this.url}/${LOCKS_PATH}`;
    this.opTimeoutMs = o.opTimeoutMs;
    this.heartbeatMs = o.heartbeatMs ?? clamp(o.opTimeoutMs / 2, 50, 10_000);
    this.backoffBaseMs = o.reconnect?.baseMs ?? 50;
    this.backoffMaxMs = o.reconnect?.maxMs ?? clamp(o.opTimeoutMs / 2, 100, 5_000);
    this.log = o.logger.child({ lockAuthority: redactUrl(this.url) });
  }

  /**
   * Creates the backend and starts connecting in the background: an authority that is down
   * now is logged, not fatal (operations answer unavailable until it is back).
   */
  static async connect(options: ForwardingLockBackendOptions): Promise<ForwardingLockBackend> {
    const backend = new ForwardingLockBackend(options);
    backend.openLink(false);
    return backend;
  }

  /** True while a link to the authority is up (it answered the hello). */
  get connected(): boolean {
    return this.current?.ready === true;
  }

  // ---- LockBackend ----

  async acquire(request: AcquireRequest): Promise<LockGrant> {
    const { key, ttlMs, waitMs, owner } = request;
    const reply = await this.request({ op: 'acquire', key, token: 0, ttlMs, waitMs, owner }, waitMs + this.opTimeoutMs, request.signal);
    // The authority's TTL, unchanged (see the class comment); at least the one asked for.
    return { key, token: reply.token, ttlMs: reply.ttlMs > 0 ? reply.ttlMs : ttlMs };
  }

  async renew(key: string, token: number, ttlMs: number, owner: string): Promise<LockGrant> {
    const reply = await this.request({ op: 'renew', key, token, ttlMs, waitMs: 0, owner }, this.opTimeoutMs);
    return { key, token: reply.token || token, ttlMs: reply.ttlMs || ttlMs };
  }

  async release(key: string, token: number, owner: string): Promise<void> {
    await this.request({ op: 'release', key, token, ttlMs: 0, waitMs: 0, owner }, this.opTimeoutMs);
  }

  async check(key: string, token: number, owner: string): Promise<void> {
    await this.request({ op: 'check', key, token, ttlMs: 0, waitMs: 0, owner }, this.opTimeoutMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.rotateTimer) clearTimeout(this.rotateTimer);
    const err = new UnavailableError('lock authority link closed: the relay is shutting down');
    for (const p of Array.from(this.pending.values())) this.settle(p, err);
    this.queue.length = 0;
    this.late.clear();
    for (const link of [this.current, this.opening, ...this.draining]) if (link) this.dropLink(link, 'closing');
    this.current = this.opening = null;
    this.draining.clear();
  }

  // ---- requests ----

  private request(
    fields: Omit<LockRequestMessage, 'type' | 'id'>,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<LockReplyMessage> {
    if (this.closed) return Promise.reject(new UnavailableError('lock authority link closed: the relay is shutting down'));
    if (this.refused) return Promise.reject(this.refused);
    if (signal?.aborted) return Promise.reject(new UnavailableError('lock request withdrawn: the requester went away'));
    const msg: LockRequestMessage = { type: 'lock-request', id: this.nextId++, ...fields };
    return new Promise<LockReplyMessage>((resolve, reject) => {
      const p: Pending = {
        msg,
        link: null,
        deadline: performance.now() + timeoutMs,
        timer: setTimeout(() => this.giveUp(p, this.timeoutError(p, timeoutMs)), timeoutMs),
        resolve,
        reject,
        onAbort: null,
        signal,
      };
      if (signal) {
        p.onAbort = () => this.giveUp(p, new UnavailableError('lock request withdrawn: the requester went away'));
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.set(msg.id, p);
      const link = this.current;
      if (link?.ready) this.send(link, p);
      else {
        this.queue.push(p);
        this.ensureConnecting();
      }
    }).then((reply) => {
      if (reply.code !== '') throw errorFromCode(reply.code, reply.message);
      return reply;
    });
  }

  private timeoutError(p: Pending, timeoutMs: number): UnavailableError {
    const what = `${p.msg.op} "${p.msg.key}"`;
    if (p.link) return new UnavailableError(`lock authority ${this.url} did not answer within ${timeoutMs} ms (${what})`);
    return new UnavailableError(`lock authority ${this.url} unreachable for ${timeoutMs} ms (${what}): ${this.lastError}`);
  }

  private send(link: Link, p: Pending): void {
    p.link = link;
    link.inflight.add(p);
    link.ws.send(encodeMessage(p.msg));
  }

  /** The caller gives up (deadline, abort): a sent acquire may still be granted, so remember it. */
  private giveUp(p: Pending, err: UnavailableError): void {
    if (!this.pending.has(p.msg.id)) return;
    if (p.link && p.msg.op === 'acquire' && !p.link.closed) this.late.set(p.msg.id, { key: p.msg.key, owner: p.msg.owner ?? '', link: p.link });
    this.settle(p, err);
  }

  /** Ends a request: with the authority's reply, or with an error. */
  private settle(p: Pending, outcome: LockReplyMessage | Error): void {
    if (!this.pending.delete(p.msg.id)) return;
    clearTimeout(p.timer);
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    const link = p.link;
    if (link) {
      link.inflight.delete(p);
      if (this.draining.has(link) && link.inflight.size === 0) this.retire(link);
    }
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  private onReply(link: Link, reply: LockReplyMessage): void {
    const p = this.pending.get(reply.id);
    if (p && p.link === link) return this.settle(p, reply);
    const late = this.late.get(reply.id);
    if (!late || late.link !== link) return;
    this.late.delete(reply.id);
    if (reply.code === '') {
      // Granted after its requester gave up: nobody will use it. Give it back at once.
      this.log.info({ key: late.key, token: reply.token }, 'releasing a lock granted after its requester gave up');
      this.release(late.key, reply.token, late.owner).catch((err: unknown) =>
        this.log.info({ key: late.key, token: reply.token, err: (err as Error).message }, 'releasing a late grant failed; it runs out by itself'),
      );
    }
  }

  private flushQueue(): void {
    const link = this.current;
    if (!link?.ready) return;
    for (const p of this.queue.splice(0)) this.send(link, p);
  }

  // ---- the link ----

  private ensureConnecting(): void {
    if (this.closed || this.connecting || this.reconnectTimer || (this.current && !this.current.closed)) return;
    this.openLink(false);
  }

  /** Opens a link: the first one, a reconnect, or (`successor`) the replacement of the current one. */
  private openLink(successor: boolean): void {
    if (this.closed || this.connecting) return;
    this.connecting = true;
    void this.o
      .token()
      .then(
        (token) => this.dial(token, successor),
        (err: unknown) => {
          this.connecting = false;
          this.lastError = `getting the relay credential failed: ${(err as Error).message}`;
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
    const ws = new WebSocket(this.endpoint, ['capsync'], {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      handshakeTimeout: this.opTimeoutMs,
      perMessageDeflate: false,
      maxPayload: 1024 * 1024,
    });
    const link: Link = {
      ws,
      ready: false,
      readyAt: 0,
      closed: false,
      lastHeard: performance.now(),
      credentialExpiresAt,
      inflight: new Set(),
      lastError: '',
      timers: [],
      successor,
    };
    this.opening = link;
    // TCP connect, upgrade and hello must all fit in one operation's deadline (a held link
    // accepts the TCP connection and then says nothing).
    link.timers.push(
      setTimeout(() => {
        if (link.ready) return;
        link.lastError = `no answer to the hello within ${this.opTimeoutMs} ms`;
        this.dropLink(link, link.lastError);
      }, this.opTimeoutMs),
    );
    ws.on('open', () => {
      link.lastHeard = performance.now();
      const hello: Message = { type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: [RELAY_CAPABILITY, RELAY_ID_PREFIX + this.o.relayId] };
      ws.send(encodeMessage(hello));
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
    if (msg.type === 'lock-reply') this.onReply(link, msg);
    else if (msg.type === 'hello' && !link.ready) this.onHello(link, msg.capabilities);
  }

  private onHello(link: Link, capabilities: string[]): void {
    if (!capabilities.includes('locks')) {
      return this.refuse(link, `${this.url} does not serve locks (its hello has no "locks" capability)`);
    }
    if (capabilities.includes(`${LOCK_BACKEND_CAPABILITY}forwarded`)) {
      return this.refuse(link, `${this.url} is not a lock authority: it forwards its own lock requests (set --lock-authority only on the other relays)`);
    }
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
      if (previous.inflight.size === 0) this.retire(previous);
      this.log.debug('lock authority link rotated (fresh credential)');
      this.link.emit('rotated');
    } else {
      if (this.outage || this.failures > 0) this.log.info('lock authority link up');
      else this.log.info('connected to the lock authority');
      this.outage = false;
    }
    const heartbeat = setInterval(() => this.heartbeat(link), this.heartbeatMs);
    heartbeat.unref();
    link.timers.push(heartbeat);
    this.scheduleRotation(link);
    this.flushQueue();
    this.link.emit('up');
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
    this.failures = Math.max(this.failures, 30); // retry at the capped backoff
    this.dropLink(link, why);
  }

  private heartbeat(link: Link): void {
    if (link.closed) return;
    const silentMs = performance.now() - link.lastHeard;
    if (silentMs > this.opTimeoutMs + this.heartbeatMs) {
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
    // Closing withdraws at the authority whatever still waits there for this link.
    for (const [id, l] of this.late) if (l.link === link) this.late.delete(id);
    for (const t of link.timers.splice(0)) clearTimeout(t);
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
    for (const [id, l] of this.late) if (l.link === link) this.late.delete(id);
    const wasCurrent = this.current === link;
    if (wasCurrent) this.current = null;

    if (!wasReady && (code === CloseCode.Unauthorized || code === CloseCode.Forbidden)) {
      // Refused at the door: waiting for this link cannot help, so requests fail at once until
      // a later attempt (at the capped backoff) is accepted. A rotation's successor refused
      // leaves the current link in service.
      if (!this.outage || link.successor) this.log.error({ code, reason: why }, "the lock authority refused this relay's credential");
      if (!link.successor) {
        this.refused = new UnavailableError(`lock authority ${this.url} refused this relay's credential (${why}); do the relays share --auth-secret?`);
        this.outage = true;
      }
      this.failures = Math.max(this.failures, 30);
    }
    if (!this.closed) {
      if (wasReady && wasCurrent) {
        this.log.warn({ code, reason: why }, 'lost the link to the lock authority; reconnecting');
        this.outage = true;
      } else if (!wasReady && !this.outage && !link.successor) {
        this.log.warn({ reason: why }, 'cannot reach the lock authority; retrying (lock requests answer unavailable meanwhile)');
        this.outage = true;
      }
      this.lastError = why;
    }

    // What was sent on it: renew and check go again on the next link, the rest fail now.
    for (const p of Array.from(link.inflight)) {
      link.inflight.delete(p);
      p.link = null;
      if (!this.closed && !this.refused && IDEMPOTENT.has(p.msg.op) && performance.now() < p.deadline) this.queue.push(p);
      else this.settle(p, new UnavailableError(`link to the lock authority lost before it answered (${why}); the outcome of ${p.msg.op} "${p.msg.key}" is unknown`));
    }
    if (this.refused) for (const p of this.queue.slice()) this.settle(p, this.refused);

    if (this.closed) return;
    if (wasReady && wasCurrent) {
      this.link.emit('down', why);
      // A link that stayed up a while starts the backoff over; one that flaps does not.
      if (performance.now() - link.readyAt >= this.backoffMaxMs) this.failures = 0;
    }
    if (this.current && !this.current.closed) {
      // A rotation's successor failed (or a drained link closed): the current link goes on.
      this.flushQueue();
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
    }, this.backoff());
    this.rotateTimer.unref();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer || this.connecting) return;
    if (this.current && !this.current.closed) return;
    const delay = this.backoff();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.openLink(false);
    }, delay);
    this.reconnectTimer.unref();
  }

  /** Capped exponential backoff with jitter (half to all of the step). */
  private backoff(): number {
    const step = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.min(this.failures, 20));
    this.failures++;
    return step / 2 + Math.random() * (step / 2);
  }
}

/** When a JWT expires (ms since epoch), read without verifying it (the authority does that). */
function expiryOf(token: string | undefined): number | undefined {
  if (!token) return undefined;
  try {
    const { exp } = jose.decodeJwt(token);
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function clamp(v: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, v));
}

function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}
