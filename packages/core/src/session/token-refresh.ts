import { fromBase64 } from 'lib0/buffer';
import type { Later } from './liveness.js';

/**
 * Live token refresh, the client's side (the relay announced TOKEN_REFRESH_CAPABILITY): before
 * the token of an open link expires, the credential function is asked for a fresh one, which
 * goes to the relay as a `token-refresh` message on the same link: no reconnect, no resync.
 */

/** A refresh is never scheduled sooner than this after the last one (a token function that mints very short-lived tokens). */
export const MIN_REFRESH_DELAY_MS = 1_000;
/** A refresh goes out at the latest this long before the token expires. */
export const REFRESH_LEAD_MS = 30_000;

/**
 * When a JWT expires (its `exp`, ms since epoch), read without verifying it (the relay
 * verifies): undefined for a token that is not a JWT or has no numeric `exp`.
 */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined || payload.length > 16 * 1024) return undefined;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '=');
    const claims = JSON.parse(new TextDecoder().decode(fromBase64(base64))) as { exp?: unknown };
    return typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How long to wait before refreshing a token that expires at `expiresAt`: at 80 % of its
 * remaining life or REFRESH_LEAD_MS before it expires, whichever is sooner, but not sooner than
 * MIN_REFRESH_DELAY_MS (or half its remaining life, when that is shorter: it must still go out
 * in time). Null once it has expired: the relay closes the link (4401) and the dialer dials again.
 */
export function refreshDelayMs(expiresAt: number, now: number): number | null {
  const remaining = expiresAt - now;
  if (remaining <= 0) return null;
  const wanted = Math.min(0.8 * remaining, remaining - REFRESH_LEAD_MS);
  return Math.floor(Math.max(wanted, Math.min(MIN_REFRESH_DELAY_MS, remaining / 2)));
}

/**
 * Refreshes the token of one open link until `stop`. `credential` is the link's credential
 * function; `send` puts a `token-refresh` on the link. A credential function that fails or
 * answers the same token is asked again later (the same schedule); once the token expired the
 * refresher stops and the relay's close (4401) makes the dialer reconnect, as without it.
 */
export class TokenRefresher {
  private cancel: (() => void) | null = null;
  private stopped = false;

  constructor(
    private token: string,
    private readonly credential: () => string | undefined | Promise<string | undefined>,
    private readonly send: (token: string) => void,
    private readonly later: Later,
  ) {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.cancel = null;
  }

  private schedule(): void {
    const expiresAt = tokenExpiry(this.token);
    const delay = expiresAt === undefined ? null : refreshDelayMs(expiresAt, Date.now());
    if (delay === null || this.stopped) return;
    this.cancel = this.later(delay, () => {
      this.cancel = null;
      void this.refresh();
    });
  }

  private async refresh(): Promise<void> {
    let fresh: string | undefined;
    try {
      fresh = await this.credential();
    } catch {
      fresh = undefined;
    }
    if (this.stopped) return;
    if (fresh && fresh !== this.token) {
      this.token = fresh;
      this.send(fresh);
    }
    this.schedule();
  }
}
