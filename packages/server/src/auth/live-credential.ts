import { AuthError, CapsyncError } from '@capsync/core';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { AccessControl, AccessGrant, Permission, Principal } from './access.js';

/**
 * Live permissions (README "Integrating with your backend"): a client's socket keeps its
 * credential up to date (`token-refresh`, no reconnect) and each document open on it has its
 * permission decided again, on a refresh and every `--auth-recheck-interval-ms`.
 */

/** One open document session of a client, whose permission can change while it is open (RelayConnection). */
export interface PermissionTarget {
  /** The name its permission is decided on (a subdocument's is its parent's). */
  readonly authName: string;
  readonly permission: Permission;
  /** The identity it was opened for (a token's `sub`, an authorization callback's `identity`). */
  readonly subject: string | undefined;
  readonly closed: boolean;
  /** A new grant for the same identity, applied live: write ↔ read, and its expiry. */
  regrant(grant: AccessGrant): void;
  /** Its permission is gone: closes this session alone, with `err`'s close code. */
  revoke(err: CapsyncError): void;
}

/** What a re-check of one session came to (the label of capsync_permission_checks_total). */
export type PermissionOutcome = 'kept' | 'downgraded' | 'upgraded' | 'revoked' | 'expired' | 'undecided' | 'closed-undecided' | 'superseded';

/**
 * Sessions of one socket decided at once, at most: with an authorization callback each is a
 * call, and a socket may hold --max-sessions-per-socket of them.
 */
export const RECHECKS_PER_SOCKET = 8;

/**
 * Re-checks of one session in a row that may come undecided (the authorization callback failed,
 * timed out or was full) before the session is closed (1013 'unavailable'): a re-check fails
 * open for a while (a short backend outage does not cut users off), not for good (a revoked
 * user must not keep write by keeping the backend busy).
 */
export const UNDECIDED_RECHECKS_LIMIT = 3;

export interface LiveCredentialDeps {
  access: AccessControl;
  /** `--token-refresh-min-interval-ms`: a socket's refreshes are taken at most this often. */
  minRefreshIntervalMs: number;
  metrics: Pick<RelayMetrics, 'tokenRefreshes' | 'permissionChecks'>;
  logger: Logger;
  /** The socket closed (`ended`): it is re-checked no more (PermissionRechecks). */
  ended?(live: LiveCredential): void;
}

/** What the socket that owns a LiveCredential does for it. */
export interface LiveCredentialOwner {
  /** The socket's open document sessions now. */
  targets(): Iterable<PermissionTarget>;
  /** A refresh was accepted: the socket's credential (and so its expiry) is now `principal`. */
  replaced(principal: Principal): void;
  /** A refresh was refused (invalid, expired, another identity): the socket is closed with `err` (4401). */
  refused(err: CapsyncError): void;
  readonly closed: boolean;
}

/**
 * The credential of one client socket (a plain document socket, or a multiplexed one for all
 * its sessions), kept current while it is open.
 *
 * - `refresh(token)`: verified as at the upgrade (`authenticate`); a token that does not verify,
 *   or names another identity (`sub`), or a relay credential where there was none (or the
 *   reverse), is refused and the socket closed (4401). Accepted, it replaces the socket's
 *   credential (its expiry too) and every open session is decided again with it. One refresh is
 *   taken at a time per socket, and at most one every `minRefreshIntervalMs`: each costs a
 *   verification and a decision per open session (a callback call each), so a client sending
 *   them in a loop must not cost that without bound. Tokens that come sooner wait (only the
 *   latest; counted `deferred`) and are taken then.
 * - `recheck()`: every open session decided again with the current credential, at most
 *   RECHECKS_PER_SOCKET at once: the same permission is kept; write → read downgrades the
 *   session live (its updates are refused from then on); read → write upgrades it; none
 *   ('forbidden') closes that session alone with 4412 `permission-revoked`; an expired
 *   credential closes it with 4401. An answer that cannot be had (a callback that failed,
 *   timed out or is full: 'unavailable') keeps the session as it is, for a while: a short backend
 *   outage does not cut users off; UNDECIDED_RECHECKS_LIMIT of them in a row close that session
 *   with 1013 'unavailable' (try again: its reopen is decided afresh, as any open), so a
 *   permission is never kept for good without an answer.
 *   An authorization callback answering another identity for the same token closes the socket (4401).
 * - Order: an answer is applied only if it is still the newest. Each credential has a version
 *   (`version`, one more at each accepted refresh): a re-check whose credential was replaced
 *   while it waited drops its answer and asks again with the current one (the refresh's own
 *   re-check may be asking already: then the newer ask decides); and of two re-checks of one
 *   session in flight (an interval round's and a refresh's) only the later asked is applied.
 *   So a slow answer about an old token never undoes what the new token decided.
 */
export class LiveCredential {
  private principal: Principal;
  private verifying: Promise<void> | null = null;
  private queued: string | null = null;
  /** When the last refresh was taken (performance.now()), and the timer that takes a deferred one. */
  private lastTaken = -Infinity;
  private wakeup: NodeJS.Timeout | null = null;
  /** One more at each accepted refresh (see `version`). */
  private credentialVersion = 0;
  /** Each re-check's ask is numbered: the newest asked of each session is the one applied. */
  private asks = 0;
  private readonly lastAsked = new WeakMap<PermissionTarget, number>();
  /** Re-checks of a session in a row that came undecided. */
  private readonly undecided = new WeakMap<PermissionTarget, number>();
  private isEnded = false;

  constructor(
    principal: Principal,
    private readonly deps: LiveCredentialDeps,
    private readonly owner: LiveCredentialOwner,
  ) {
    this.principal = principal;
  }

  get current(): Principal {
    return this.principal;
  }

  get closed(): boolean {
    return this.isEnded || this.owner.closed;
  }

  /**
   * The version of the credential: one more each time a refresh replaces it. A decision started
   * with one version and answered after it changed was made for a credential the socket no
   * longer holds: it is made again (a multiplexed open waiting for its answer, a re-check).
   */
  get version(): number {
    return this.credentialVersion;
  }

  /** Its socket closed: no more refreshes or re-checks (it leaves PermissionRechecks at once). */
  ended(): void {
    if (this.isEnded) return;
    this.isEnded = true;
    if (this.wakeup) clearTimeout(this.wakeup);
    this.wakeup = null;
    this.queued = null;
    this.deps.ended?.(this);
  }

  /** A client's `token-refresh`. */
  refresh(token: string): void {
    const wait = this.lastTaken + this.deps.minRefreshIntervalMs - performance.now();
    if (this.verifying || this.wakeup || wait > 0) {
      this.queued = token;
      this.deps.metrics.tokenRefreshes.inc({ outcome: 'deferred' });
      if (!this.verifying && !this.wakeup) this.deferUntil(wait);
      return;
    }
    this.lastTaken = performance.now();
    this.verifying = this.verify(token)
      .catch((err: unknown) => this.deps.logger.error({ err }, 'refreshing a token failed'))
      .finally(() => {
        this.verifying = null;
        if (this.queued !== null) this.deferUntil(this.lastTaken + this.deps.minRefreshIntervalMs - performance.now());
      });
  }

  /** Takes the deferred token in `ms` (at once when due). */
  private deferUntil(ms: number): void {
    this.wakeup = setTimeout(() => {
      this.wakeup = null;
      const next = this.queued;
      this.queued = null;
      if (next !== null && !this.owner.closed) this.refresh(next);
    }, Math.max(0, ms));
    this.wakeup.unref();
  }

  private async verify(token: string): Promise<void> {
    let fresh: Principal;
    try {
      fresh = await this.deps.access.authenticate(token);
      if (Boolean(fresh.relay) !== Boolean(this.principal.relay)) throw new AuthError('unauthorized', 'a refreshed token must be of the same kind (client or relay) as the connection’s');
      if (fresh.subject !== this.principal.subject) throw new AuthError('unauthorized', 'a refreshed token must name the same identity (sub) as the connection’s');
    } catch (err) {
      const refusal = err instanceof CapsyncError ? err : new AuthError('unauthorized', 'the refreshed token could not be verified');
      this.deps.metrics.tokenRefreshes.inc({ outcome: 'refused' });
      if (!this.owner.closed) this.owner.refused(refusal);
      return;
    }
    if (this.owner.closed) return;
    this.deps.metrics.tokenRefreshes.inc({ outcome: 'accepted' });
    this.principal = fresh;
    this.credentialVersion++;
    this.owner.replaced(fresh);
    await this.recheck();
  }

  /** Decides every open session's permission again with the current credential. */
  async recheck(): Promise<void> {
    const targets = [...this.owner.targets()].filter((t) => !t.closed);
    for (let i = 0; i < targets.length && !this.owner.closed; i += RECHECKS_PER_SOCKET) {
      await Promise.all(targets.slice(i, i + RECHECKS_PER_SOCKET).map((t) => this.recheckOne(t)));
    }
  }

  private async recheckOne(target: PermissionTarget): Promise<void> {
    for (;;) {
      const version = this.credentialVersion;
      const ask = ++this.asks;
      this.lastAsked.set(target, ask);
      let grant: AccessGrant | null = null;
      let failure: unknown = null;
      try {
        grant = await this.deps.access.authorizeDoc(this.principal, target.authName, { recheck: true });
      } catch (err) {
        failure = err;
      }
      if (target.closed || this.owner.closed) return;
      // A later re-check of this session was asked meanwhile: its answer is the one to apply.
      if (this.lastAsked.get(target) !== ask) return this.deps.metrics.permissionChecks.inc({ outcome: 'superseded' });
      // The credential was replaced while this one waited: decided again with the current one.
      if (this.credentialVersion !== version) {
        this.deps.metrics.permissionChecks.inc({ outcome: 'superseded' });
        continue;
      }
      return grant ? this.apply(target, grant) : this.applyFailure(target, failure);
    }
  }

  private apply(target: PermissionTarget, grant: AccessGrant): void {
    this.undecided.delete(target);
    if (grant.subject !== target.subject) {
      this.deps.metrics.tokenRefreshes.inc({ outcome: 'refused' });
      this.owner.refused(new AuthError('unauthorized', 'the credential now names another identity than the connection’s'));
      return;
    }
    const outcome: PermissionOutcome = grant.permission === target.permission ? 'kept' : grant.permission === 'read' ? 'downgraded' : 'upgraded';
    target.regrant(grant);
    this.counted(target, outcome);
  }

  private applyFailure(target: PermissionTarget, err: unknown): void {
    const code = err instanceof CapsyncError ? err.code : 'internal';
    if (code === 'forbidden') {
      target.revoke(new AuthError('permission-revoked', `the permission on "${target.authName}" was withdrawn`));
      return this.counted(target, 'revoked');
    }
    if (code === 'unauthorized') {
      target.revoke(err as CapsyncError);
      return this.counted(target, 'expired');
    }
    const inARow = (this.undecided.get(target) ?? 0) + 1;
    const msg = (err as Error)?.message;
    if (inARow < UNDECIDED_RECHECKS_LIMIT) {
      this.undecided.set(target, inARow);
      this.deps.logger.warn({ doc: target.authName, code, msg, inARow }, 'permission re-check undecided; the session keeps its permission for now');
      return this.counted(target, 'undecided');
    }
    this.undecided.delete(target);
    this.deps.logger.warn({ doc: target.authName, subject: target.subject, code, msg, inARow }, 'permission re-checks undecided too many times in a row; closing the session');
    target.revoke(new CapsyncError('unavailable', `the permission on "${target.authName}" could not be decided (${inARow} re-checks in a row); reopen it to have it decided again`));
    this.counted(target, 'closed-undecided');
  }

  private counted(target: PermissionTarget, outcome: PermissionOutcome): void {
    this.deps.metrics.permissionChecks.inc({ outcome });
    if (outcome === 'downgraded' || outcome === 'upgraded' || outcome === 'revoked' || outcome === 'closed-undecided') {
      this.deps.logger.info({ doc: target.authName, subject: target.subject, outcome }, 'permission changed on an open session');
    }
  }
}
