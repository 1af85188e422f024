import { EventEmitter } from 'node:events';
import { CapsyncError } from '@capsync/core';
import type { Logger } from '../logger.js';
import { redactUrl } from '../auth/url-token.js';
import { DEFAULTS } from '../config.js';
import type { SendBufferOptions } from '../relay/send-buffer.js';
import { shuttingDown, type AcquireRequest, type LockBackend, type LockBackendEvents, type LockGrant } from './lock-backend.js';
import { AuthorityLink, type ForwardingLinkEvents } from './authority-link.js';
import { ForwardedRequests } from './forwarded-requests.js';

export type { ForwardingLinkEvents } from './authority-link.js';

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
  /** The link's send-buffer bounds (a relay passes its --send-buffer-limit and --slow-consumer-grace-ms). Default: the relay's defaults. */
  outbound?: SendBufferOptions;
  /** The backoff's jitter source (tests pin it); default Math.random. */
  random?: () => number;
}

/**
 * A lock backend that forwards every operation to another relay's lock endpoint, where that
 * relay's own backend (its embedded one) is the single lock authority of the mesh
 * (`--lock-authority ws://host:port`). It holds no lease state of its own: every acquire,
 * renew, release and fencing `check` is one `lock-request` to the authority over one
 * WebSocket, authenticated with the relay credential, and its answer is the authority's.
 * Each request names the identity it is made for (`owner`), which the authority honours
 * because the link carries a relay credential: leases belong to the same identities as if the
 * clients were connected to the authority itself. The link (connecting, heartbeats,
 * reconnects, credential rotation) is AuthorityLink's; matching answers to requests,
 * deadlines and what happens to requests when a link drops is ForwardedRequests'.
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
  readonly link: EventEmitter<ForwardingLinkEvents>;
  readonly url: string;
  private readonly opTimeoutMs: number;
  private readonly links: AuthorityLink;
  private readonly requests: ForwardedRequests;
  private closed = false;

  private constructor(o: ForwardingLockBackendOptions) {
    super();
    if (!/^wss?:\/\/[^/]+/.test(o.url)) throw new CapsyncError('internal', `lock authority: "${o.url}" is not a ws(s) URL`);
    if (!(o.opTimeoutMs > 0)) throw new CapsyncError('internal', 'lock authority: opTimeoutMs must be positive');
    this.url = o.url.replace(/\/+$/, '');
    this.opTimeoutMs = o.opTimeoutMs;
    const logger = o.logger.child({ lockAuthority: redactUrl(this.url) });
    this.requests = new ForwardedRequests(this.url, o.opTimeoutMs, logger);
    this.links = new AuthorityLink(
      {
        url: this.url,
        token: o.token,
        opTimeoutMs: o.opTimeoutMs,
        heartbeatMs: o.heartbeatMs ?? clamp(o.opTimeoutMs / 2, 50, 10_000),
        reconnect: { baseMs: o.reconnect?.baseMs ?? 50, maxMs: o.reconnect?.maxMs ?? clamp(o.opTimeoutMs / 2, 100, 5_000) },
        outbound: o.outbound ?? { sendBufferLimit: DEFAULTS.sendBufferLimit, slowConsumerGraceMs: DEFAULTS.slowConsumerGraceMs },
        relayId: o.relayId,
        logger,
        ...(o.random ? { random: o.random } : {}),
      },
      this.requests,
    );
    this.requests.attach(this.links);
    this.link = this.links.events;
  }

  /**
   * Creates the backend and starts connecting in the background: an authority that is down
   * now is logged, not fatal (operations answer unavailable until it is back).
   */
  static async connect(options: ForwardingLockBackendOptions): Promise<ForwardingLockBackend> {
    const backend = new ForwardingLockBackend(options);
    backend.links.ensureConnecting();
    return backend;
  }

  /** True while a link to the authority is up (it answered the hello). */
  get connected(): boolean {
    return this.links.ready !== null;
  }

  async acquire(request: AcquireRequest): Promise<LockGrant> {
    const { key, ttlMs, waitMs, owner } = request;
    const reply = await this.requests.request({ op: 'acquire', key, token: 0, ttlMs, waitMs, owner }, waitMs + this.opTimeoutMs, request.signal);
    // The authority's TTL, unchanged (see the class comment); at least the one asked for.
    return { key, token: reply.token, ttlMs: reply.ttlMs > 0 ? reply.ttlMs : ttlMs };
  }

  async renew(key: string, token: number, ttlMs: number, owner: string): Promise<LockGrant> {
    const reply = await this.requests.request({ op: 'renew', key, token, ttlMs, waitMs: 0, owner }, this.opTimeoutMs);
    return { key, token: reply.token || token, ttlMs: reply.ttlMs || ttlMs };
  }

  async release(key: string, token: number, owner: string): Promise<void> {
    await this.requests.request({ op: 'release', key, token, ttlMs: 0, waitMs: 0, owner }, this.opTimeoutMs);
  }

  async check(key: string, token: number, owner: string): Promise<void> {
    await this.requests.request({ op: 'check', key, token, ttlMs: 0, waitMs: 0, owner }, this.opTimeoutMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.requests.close(shuttingDown());
    this.links.close();
  }
}

function clamp(v: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, v));
}
