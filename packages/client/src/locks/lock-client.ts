import { CapsyncError, LeaseLostError, UnavailableError, errorCodeFromReason, errorFromCode, type LockOp, type LockReplyMessage, type Message } from '@capsync/core';
import { RelayLink, decodeFromRelay, type RelayLinkOptions } from '../sync/relay-link.js';
import type { RelaySockets } from '../sync/relay-socket.js';
import { SessionLink, type DocLink } from '../sync/session-link.js';
import { Lease, type LeaseOwner } from './lease.js';
import { PendingRequests } from './pending-requests.js';

/** Path of the relay's lock endpoint (mirrors the server's LOCKS_PATH). */
export const LOCKS_PATH = '.capsync/locks';

export interface AcquireOptions {
  /** Lease length. Default 10 s. The lease must be renewed before it runs out (withLock does). */
  ttlMs?: number;
  /** How long to wait while someone else holds the lock. Default 0: fail at once with LockTimeoutError. */
  waitMs?: number;
  /**
   * How long the lock authority may take to answer (on top of `waitMs`) before the call
   * rejects with UnavailableError. Default: the client's `lockTimeoutMs` (2 s).
   */
  timeoutMs?: number;
}

export interface LockClientSettings {
  link: Omit<RelayLinkOptions, 'docName'>;
  /**
   * The client's multiplexed socket: the lock protocol is its lock session. Null (`multiplex:
   * false`): a socket of its own to the lock endpoint, as when the relay has no lock sessions.
   */
  sockets?: RelaySockets | null;
  /** Deadline to reach the lock authority, per operation. */
  timeoutMs: number;
  /**
   * The lease counts as lost this long before its TTL runs out, measured from when the
   * request was sent, on the monotonic clock. Default: a tenth of the TTL, 5 ms to 1 s.
   */
  marginMs?: (ttlMs: number) => number;
}

const DEFAULT_TTL_MS = 10_000;

/**
 * `client.locks`: leases with fencing tokens from the relay's lock authority, over the lock
 * session of the client's multiplexed socket (the socket its documents share; opened on first
 * use, reconnected with backoff), or over a WebSocket of its own to the relay's lock endpoint
 * when multiplexing is off or the relay does not serve lock sessions. Both are the same link to
 * it (DocLink), so nothing below depends on which.
 *
 * The CP promises: an operation that cannot reach the authority rejects with
 * UnavailableError by its deadline; a lease's `signal` aborts (LeaseLostError) at the lease's
 * local deadline — send time + TTL − margin on the monotonic clock — unless a renewal was
 * confirmed first, so it never fires after the authority may have moved on. A lease is a
 * lower bound on exclusivity only: protect the resource itself with the token (`cp.set`, or
 * `FencedResource` on your server).
 */
export class LockClient implements LeaseOwner {
  private link: DocLink | null = null;
  private readonly outgoing = new Map<number, Message>();
  /** Acquire requests that timed out: if the relay grants them after all, release at once. */
  private readonly abandoned = new Map<number, string>();
  private readonly pending = new PendingRequests<LockReplyMessage>((id) => this.onTimeout(id));
  private readonly leases = new Set<Lease>();
  private closed = false;

  constructor(private readonly settings: LockClientSettings) {}

  /**
   * Takes the lock on `key`. Resolves with a lease; rejects with LockTimeoutError (held by
   * someone else for longer than `waitMs`), UnavailableError (authority unreachable within
   * the deadline; the lock may have been granted and then runs out by itself), or an
   * AuthError.
   */
  async acquire(key: string, options: AcquireOptions = {}): Promise<Lease> {
    const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    const waitMs = options.waitMs ?? 0;
    const timeoutMs = (options.timeoutMs ?? this.settings.timeoutMs) + waitMs;
    const { reply, sentAt } = this.request('acquire', key, 0, ttlMs, waitMs, timeoutMs);
    const r = await reply;
    // The relay counts the lease from when it received the request (the TTL plus any wait);
    // counted from our send time, which is earlier, our deadline comes first.
    const granted = r.ttlMs > 0 ? r.ttlMs : ttlMs;
    const deadline = (await sentAt) + granted - this.margin(ttlMs);
    if (deadline <= performance.now()) {
      // The reply took longer than the lease: unusable. Give it back rather than block the key.
      this.request('release', key, r.token, 0, 0, this.settings.timeoutMs).reply.catch(() => {});
      throw new UnavailableError(`the lock on "${key}" was granted, but its answer came after the lease would have run out`);
    }
    const lease = new Lease(this, key, r.token, ttlMs, deadline);
    this.leases.add(lease);
    lease.signal.addEventListener('abort', () => this.leases.delete(lease), { once: true });
    return lease;
  }

  /**
   * Runs `fn` while holding the lock on `key`: acquires, renews every TTL/3 while `fn` runs,
   * and releases afterwards. `lease.signal` aborts if the lease is lost meanwhile; then this
   * rejects with LeaseLostError even if `fn` resolved, since its work was not exclusive.
   */
  async withLock<T>(key: string, fn: (lease: Lease) => Promise<T> | T, options: AcquireOptions = {}): Promise<T> {
    const lease = await this.acquire(key, options);
    const stopRenewing = lease.keepRenewed();
    let result: T;
    try {
      result = await fn(lease);
    } finally {
      stopRenewing();
      if (lease.valid) await lease.release().catch(() => {});
    }
    if (lease.lostBeforeRelease) throw lease.lostBeforeRelease;
    return result;
  }

  /** Closes the lock connection. Held leases are abandoned (they run out at the relay). */
  close(): void {
    this.closed = true;
    for (const lease of Array.from(this.leases)) lease.abandon(new LeaseLostError('the lock client was closed'));
    this.pending.failAll(new CapsyncError('internal', 'the lock client was closed'));
    this.link?.destroy();
    this.link = null;
  }

  // ---- LeaseOwner ----

  /** Sends a lock request; resolves with the success reply, or rejects with the typed refusal. */
  request(
    op: LockOp,
    key: string,
    token: number,
    ttlMs: number,
    waitMs: number,
    timeoutMs: number,
  ): { reply: Promise<LockReplyMessage>; sentAt: Promise<number> } {
    if (this.closed) {
      const err = Promise.reject(new CapsyncError('internal', 'the lock client is closed'));
      return { reply: err, sentAt: err };
    }
    const { id, reply } = this.pending.start(timeoutMs, () => `${op} "${key}"`);
    const msg: Message = { type: 'lock-request', id, op, key, token, ttlMs, waitMs };
    let markSent!: (at: number) => void;
    const sentAt = new Promise<number>((resolve) => (markSent = resolve));
    this.outgoing.set(id, msg);
    this.sentAtResolvers.set(id, markSent);
    if (op === 'acquire') this.abandoned.set(id, key);
    this.flushOutgoing();
    return {
      reply: reply.then((r) => {
        this.abandoned.delete(id);
        if (r.code !== '') throw errorFromCode(r.code, r.message);
        return r;
      }),
      sentAt,
    };
  }

  get timeoutMs(): number {
    return this.settings.timeoutMs;
  }

  margin(ttlMs: number): number {
    return this.settings.marginMs ? this.settings.marginMs(ttlMs) : Math.min(1000, Math.max(5, ttlMs / 10));
  }

  private readonly sentAtResolvers = new Map<number, (at: number) => void>();

  // ---- link ----

  private ensureLink(): DocLink {
    if (this.link) return this.link;
    const options = { ...this.settings.link, docName: LOCKS_PATH };
    const link: DocLink = this.settings.sockets ? new SessionLink(this.settings.sockets, options, 'locks') : new RelayLink(options);
    link.on('open', (_connection, _url, channel) => {
      channel.attach({
        message: (bytes) => {
          // An undecodable frame closes the link (4400), which reconnects; nothing else to do.
          const msg = decodeFromRelay(channel, bytes, () => {});
          if (msg) this.onMessage(msg);
        },
        close: () => {},
        // A text frame or an odd payload: not part of the protocol, and nothing to act on.
        error: () => {},
      });
      this.flushOutgoing();
    });
    link.on('close', ({ reason }) => this.onClose(reason));
    link.on('error', (err) => {
      // Refused (bad token, no lock permission): waiting out the deadline would only hide
      // the reason. Fail what is queued now; the next request starts a fresh link.
      if (err.code !== 'unauthorized' && err.code !== 'forbidden') return;
      this.pending.failAll(err);
      this.outgoing.clear();
      this.abandoned.clear();
      this.sentAtResolvers.clear();
      if (this.link === link) this.link = null;
      link.destroy();
    });
    // Set before start: a session on a socket already open says 'open' within start(), and
    // flushing then must find this link, not make another.
    this.link = link;
    link.start();
    return link;
  }

  private flushOutgoing(): void {
    const link = this.ensureLink();
    for (const [id, msg] of this.outgoing) {
      const at = performance.now();
      if (!link.send(msg)) return;
      this.outgoing.delete(id);
      this.pending.markSent(id);
      this.sentAtResolvers.get(id)?.(at);
      this.sentAtResolvers.delete(id);
    }
  }

  private onMessage(msg: Message): void {
    // The relay answered: the link works (the next failure starts a new round of its relays).
    // A lock session hears no hello of its own (the socket's was), so a reply says it too.
    if (msg.type === 'hello' || msg.type === 'lock-reply') this.link?.healthy();
    if (msg.type !== 'lock-reply') return;
    if (this.pending.settle(msg.id, msg)) return;
    // The reply to a request that already timed out: a grant nobody will use. Give it back.
    const key = this.abandoned.get(msg.id);
    this.abandoned.delete(msg.id);
    if (key !== undefined && msg.code === '') {
      this.request('release', key, msg.token, 0, 0, this.settings.timeoutMs).reply.catch(() => {});
    }
  }

  private onClose(reason: string): void {
    // An auth refusal: the 'error' event that follows fails them with the real reason.
    const code = errorCodeFromReason(reason);
    if (code === 'unauthorized' || code === 'forbidden') return;
    // Closed for a limit (a lock session refused at --max-sessions-per-address, a frame too big):
    // the relay is there, so say why rather than 'unavailable'. The link opens again by its backoff.
    const refusal = code === 'limit-exceeded' ? errorFromCode(code, `${reason} (the outcome of a request sent on it is unknown)`) : undefined;
    for (const id of this.pending.connectionLost(reason || 'closed', refusal)) {
      this.abandoned.delete(id);
      this.sentAtResolvers.delete(id);
    }
  }

  private onTimeout(id: number): void {
    // Never sent: drop it, nothing can come of it. Sent: keep `abandoned` to release a late grant.
    if (this.outgoing.delete(id)) this.abandoned.delete(id);
    this.sentAtResolvers.delete(id);
  }
}
