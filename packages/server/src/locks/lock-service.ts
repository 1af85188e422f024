import {
  CapsyncError,
  LimitExceededError,
  ProtocolError,
  UnavailableError,
  type ErrorCode,
  type LockReplyMessage,
  type LockRequestMessage,
} from '@capsync/core';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import { MAX_KEY_BYTES, MAX_TTL_MS, MAX_WAIT_MS, MIN_TTL_MS, type LockBackend } from './lock-backend.js';
import { LeaseQuota, MAX_LEASES_LIMIT, type LeaseHolder } from './lease-quota.js';

/**
 * The relay's lock service: validates lock requests, runs them against the backend under a
 * deadline, and counts what happened. The deadline is what makes the CP answer fast: when
 * the authority cannot answer within `opTimeoutMs` (plus the requested wait, for an
 * acquire), the answer is `unavailable`, never a guess.
 *
 * Every request is made for an identity (see ConnectionIdentity): leases belong to the
 * identity that acquired them (the backends refuse anyone else with NotOwnerError), and one
 * identity may hold at most `maxLeasesPerIdentity` leases through this relay at once (a
 * further acquire is refused with LimitExceededError `max-leases-per-identity`), and the
 * identities without a token `sub` acquiring from one client address at most
 * `maxLeasesPerAddress` together (`max-leases-per-address`; see LeaseHolder).
 */
export class LockService {
  private readonly quota: LeaseQuota;

  constructor(
    readonly backend: LockBackend,
    private readonly metrics: RelayMetrics,
    private readonly logger: Logger,
    readonly opTimeoutMs: number,
    limits: { maxLeasesPerIdentity?: number; maxLeasesPerAddress?: number } = {},
  ) {
    this.quota = new LeaseQuota(limits.maxLeasesPerIdentity ?? Number.MAX_SAFE_INTEGER, limits.maxLeasesPerAddress ?? Number.MAX_SAFE_INTEGER);
    backend.on('expired', (key, token) => {
      metrics.lockExpiries.inc();
      this.quota.expired(key, token);
      logger.info({ key, token }, 'lease expired');
    });
  }

  /**
   * Answers one lock request made for `holder` (an identity, and the client address its
   * leases count against, if any); never rejects. `signal` aborts when the requester went away.
   */
  async handle(req: LockRequestMessage, holder: LeaseHolder, signal: AbortSignal): Promise<LockReplyMessage> {
    const owner = holder.identity;
    const started = performance.now();
    const reply = (code: ErrorCode | '', message = '', token = 0, ttlMs = 0): LockReplyMessage => ({
      type: 'lock-reply',
      id: req.id,
      code,
      message,
      token,
      ttlMs,
    });
    try {
      validateRequest(req);
      const { backend } = this;
      switch (req.op) {
        case 'acquire': {
          this.quota.admit(holder);
          const abort = new AbortController();
          const onAbort = () => abort.abort();
          signal.addEventListener('abort', onAbort, { once: true });
          try {
            const grant = await this.deadline(
              backend.acquire({ key: req.key, ttlMs: req.ttlMs, waitMs: req.waitMs, owner, signal: abort.signal, receivedAt: started }),
              req.waitMs + this.opTimeoutMs,
              `acquiring "${req.key}"`,
              abort,
            );
            this.quota.granted(holder, req.key, grant.token, grant.ttlMs);
            this.metrics.lockGrants.inc();
            return reply('', '', grant.token, grant.ttlMs);
          } catch (err) {
            this.quota.withdrawn(holder);
            throw err;
          } finally {
            signal.removeEventListener('abort', onAbort);
          }
        }
        case 'renew': {
          const grant = await this.deadline(backend.renew(req.key, req.token, req.ttlMs, owner), this.opTimeoutMs, `renewing "${req.key}"`).catch((err: unknown) => {
            if (err instanceof CapsyncError && err.code === 'lease-lost') this.quota.ended(owner, req.key, req.token);
            throw err;
          });
          this.quota.renewed(owner, req.key, grant.token, grant.ttlMs);
          this.metrics.lockRenewals.inc();
          return reply('', '', grant.token, grant.ttlMs);
        }
        case 'release':
          await this.deadline(backend.release(req.key, req.token, owner), this.opTimeoutMs, `releasing "${req.key}"`).catch((err: unknown) => {
            if (err instanceof CapsyncError && err.code === 'lease-lost') this.quota.ended(owner, req.key, req.token);
            throw err;
          });
          this.quota.ended(owner, req.key, req.token);
          this.metrics.lockReleases.inc();
          return reply('', '', req.token);
        case 'check':
          // A relay that forwards to this authority fences a write (see ForwardingLockBackend).
          await this.deadline(backend.check(req.key, req.token, owner), this.opTimeoutMs, `checking the lease on "${req.key}"`);
          return reply('', '', req.token);
      }
    } catch (err) {
      const e = err instanceof CapsyncError ? err : new CapsyncError('internal', 'internal error');
      if (!(err instanceof CapsyncError)) this.logger.error({ err, key: req.key, op: req.op }, 'lock request failed');
      if (e.code === 'limit-exceeded') this.metrics.limitRefusals.inc({ limit: (e instanceof LimitExceededError && e.limit) || MAX_LEASES_LIMIT });
      this.metrics.lockRefusals.inc({ op: req.op, reason: e.code });
      if (e.code === 'unavailable') this.metrics.lockUnavailable.inc();
      return reply(e.code, e.message);
    } finally {
      this.metrics.lockSeconds.observe({ op: req.op }, (performance.now() - started) / 1000);
    }
  }

  /**
   * The fencing check before a write under `token` for `owner` (an identity): resolves if it
   * is the key's current lease and `owner`'s; rejects with NotOwnerError, StaleTokenError,
   * LeaseLostError or UnavailableError (counted).
   */
  async checkFence(key: string, token: number, owner: string): Promise<void> {
    try {
      await this.deadline(this.backend.check(key, token, owner), this.opTimeoutMs, `checking the lease on "${key}"`);
    } catch (err) {
      const code = err instanceof CapsyncError ? err.code : 'internal';
      if (code === 'unavailable') this.metrics.lockUnavailable.inc();
      else this.metrics.fencingRejections.inc({ reason: code });
      throw err;
    }
  }

  close(): Promise<void> {
    this.quota.close();
    return this.backend.close();
  }

  private deadline<T>(work: Promise<T>, ms: number, what: string, abort?: AbortController): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        abort?.abort();
        reject(new UnavailableError(`lock authority did not answer within ${ms} ms (${what})`));
      }, ms);
      work.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }
}

/** Throws ProtocolError('invalid-lock-request') for keys and times outside the limits. */
export function validateRequest(req: LockRequestMessage): void {
  const fail = (why: string): never => {
    throw new ProtocolError('invalid-lock-request', `invalid lock request: ${why}`);
  };
  if (req.key.length === 0) fail('empty key');
  if (new TextEncoder().encode(req.key).length > MAX_KEY_BYTES) fail(`key longer than ${MAX_KEY_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(req.key)) fail('key contains control characters');
  if ((req.op === 'acquire' || req.op === 'renew') && (req.ttlMs < MIN_TTL_MS || req.ttlMs > MAX_TTL_MS)) fail(`ttlMs must be in [${MIN_TTL_MS}, ${MAX_TTL_MS}]`);
  if (req.op === 'acquire' && req.waitMs > MAX_WAIT_MS) fail(`waitMs must be at most ${MAX_WAIT_MS}`);
  if (req.op !== 'acquire' && !(req.token >= 1)) fail('token must be a positive integer');
  if (!Number.isSafeInteger(req.token)) fail('token out of range');
}
