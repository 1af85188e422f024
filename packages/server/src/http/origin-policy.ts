import { isIP } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { CapsyncError } from '@capsync/core';
import type { RelayMetrics } from '../metrics.js';
import { sendError } from './http-errors.js';

/** Hosts of loopback origins, as `URL.hostname` spells them. */
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
/** Methods that change nothing: answered to any origin (without CORS headers the page cannot read them). */
const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * Which web origins may use the relay from a browser: open a WebSocket, or send a
 * state-changing HTTP request (and read the answers, through CORS).
 *
 * The `Origin` header is set by browsers only; a request without one (Node clients, peer
 * relays, curl) is not a page acting on someone's behalf and passes. Policy:
 * - `allowed` set: exactly those origins ('*' = any).
 * - otherwise, with auth: any origin. A page elsewhere cannot obtain a token, so it cannot act.
 * - otherwise (open relay): only the relay's own origin and loopback origins, because on an
 *   open relay any web page a user visits could otherwise write to every document (a
 *   cross-origin `text/plain` POST needs no preflight). "Own origin" is an origin equal to the
 *   request's Host whose host is an IP literal, `localhost` or the name the relay is bound to
 *   (`--host`): a DNS-rebinding page (its own name re-pointed at the relay) sends Host and
 *   Origin both naming its site, and rebinding needs a DNS name. A relay serving pages under
 *   another name must list that origin in --allowed-origins.
 */
export class OriginPolicy {
  private readonly boundHost: string | undefined;

  constructor(
    private readonly allowed: readonly string[] | undefined,
    private readonly authRequired: boolean,
    /** The relay's bound host (`--host`), trusted as its own name in Host. */
    boundHost?: string,
  ) {
    this.boundHost = boundHost?.toLowerCase();
  }

  /** Whether a browser request from `origin` (its Origin header) to `host` (its Host header) may proceed. */
  allows(origin: string | undefined, host: string | undefined): boolean {
    if (origin === undefined) return true;
    if (this.allowed) return this.allowed.includes('*') || this.allowed.includes(origin);
    if (this.authRequired) return true;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false; // 'null' (sandboxed frames, file://) and garbage
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    if (LOOPBACK_HOSTS.has(url.hostname)) return true;
    return host !== undefined && url.host === host.toLowerCase() && this.isOwnName(url.hostname);
  }

  /** Whether `hostname` (URL spelling) can name this relay without trusting DNS. */
  private isOwnName(hostname: string): boolean {
    const bare = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    return isIP(bare) !== 0 || bare === 'localhost' || bare === this.boundHost;
  }

  /** The error refusing `origin`. */
  refusal(origin: string): CapsyncError {
    return new CapsyncError('origin-not-allowed', `origin ${JSON.stringify(origin.slice(0, 200))} is not allowed (--allowed-origins)`);
  }
}

/**
 * Express middleware enforcing the policy on HTTP: a state-changing request (anything but
 * GET/HEAD) from a refused origin answers 403 origin-not-allowed before it is routed; an
 * allowed origin gets CORS headers, and its preflight (OPTIONS) is answered here.
 */
export function originMiddleware(policy: OriginPolicy, metrics: RelayMetrics): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const origin = req.headers.origin;
    if (origin === undefined) return next();
    res.vary('Origin');
    const allowed = policy.allows(origin, req.headers.host);
    if (allowed) res.set('Access-Control-Allow-Origin', origin);
    if (!allowed && !SAFE_METHODS.has(req.method)) {
      metrics.refusals.inc({ reason: 'origin-not-allowed' });
      // The body (if any) is never read: close instead of draining it.
      res.set('Connection', 'close');
      sendError(res, policy.refusal(origin));
      return;
    }
    if (req.method === 'OPTIONS') {
      res.set({
        'Access-Control-Allow-Methods': 'GET, HEAD, POST',
        'Access-Control-Allow-Headers': 'Authorization, Content-Type',
        'Access-Control-Max-Age': '600',
      });
      res.status(204).end();
      return;
    }
    next();
  };
}
