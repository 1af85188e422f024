import { timingSafeEqual } from 'node:crypto';
import * as jose from 'jose';
import { AuthError } from '@capsync/core';
import { docsClaim } from './docs-claim.js';
import { jwtVerifier, type JwtKeySources, type JwtVerifier } from './jwt-keys.js';
import { RELAY_CLAIM } from './relay-credential.js';

export type Permission = 'read' | 'write';

/** What a connection or HTTP request may do with one document. */
export interface AccessGrant {
  permission: Permission;
  /** Who, from the token's `sub`; undefined on an open relay. */
  subject?: string;
  /** When the credential stops being valid (ms since epoch); the relay closes the connection then. */
  expiresAt?: number;
  /**
   * The credential may act as a relay of the mesh (a peer): its connection is trusted with
   * content of the fenced area, which relays write and replicate. On an open relay only the
   * configured `peerToken` is.
   */
  relay?: boolean;
}

/**
 * Who a verified credential is: what `authenticate` found, from which `authorizeDoc` decides
 * each document without verifying the token again (a multiplexed socket authenticates once
 * and authorizes every document opened on it).
 */
export interface Principal {
  /** The token's `sub`; undefined on an open relay. */
  subject?: string;
  /** When the credential stops being valid (ms since epoch). */
  expiresAt?: number;
  /** A relay credential (see AccessGrant.relay). */
  relay?: boolean;
  /** The token's `docs` claim, read by `authorizeDoc` (JWT access only). */
  docs?: unknown;
  /** The token as presented, for an authorization callback to decide on (CallbackAccess only). */
  token?: string | undefined;
}

export interface AuthorizeDocOptions {
  /** An open session's re-check (live permissions), not an open. */
  recheck?: boolean;
}

/**
 * Decides access, in two steps: `authenticate` verifies a credential once (rejects with
 * AuthError 'unauthorized' for a missing, invalid or expired token) and `authorizeDoc` gives its
 * permission on one document (throws AuthError 'forbidden' for none, 'unauthorized' once the
 * credential expired). `authorize` is the two at once, for a connection or request that names
 * one document.
 */
export interface AccessControl {
  readonly mode: 'open' | 'jwt' | 'callback';
  authenticate(token: string | undefined): Promise<Principal>;
  /**
   * Synchronous, except with an authorization callback (CallbackAccess), for clients' principals.
   * `recheck`: an open session's permission decided again (LiveCredential), which an
   * authorization callback gives room of its own (RECHECK_AUTHORIZATIONS_IN_FLIGHT).
   */
  authorizeDoc(principal: Principal, docName: string, options?: AuthorizeDocOptions): AccessGrant | Promise<AccessGrant>;
  authorize(token: string | undefined, docName: string): Promise<AccessGrant>;
}

/**
 * No auth configured: everyone may read and write every document. The fenced area stays
 * closed to them all the same: relay trust (peering, fenced content) needs the mesh's shared
 * `peerToken`, without which an open relay has no peers.
 */
export class OpenAccess implements AccessControl {
  readonly mode = 'open' as const;
  private readonly peerToken: Buffer | null;

  constructor(options: { peerToken?: string | undefined } = {}) {
    this.peerToken = options.peerToken ? Buffer.from(options.peerToken) : null;
  }

  async authenticate(token?: string): Promise<Principal> {
    return this.isPeerToken(token) ? { relay: true } : {};
  }

  authorizeDoc(principal: Principal, _docName?: string): AccessGrant {
    return principal.relay ? { permission: 'write', relay: true } : { permission: 'write' };
  }

  async authorize(token?: string): Promise<AccessGrant> {
    return this.authorizeDoc(await this.authenticate(token));
  }

  private isPeerToken(token: string | undefined): boolean {
    if (!this.peerToken || token === undefined) return false;
    const given = Buffer.from(token);
    return given.length === this.peerToken.length && timingSafeEqual(given, this.peerToken);
  }
}

export interface JwtAccessOptions extends JwtKeySources {
  /** Where the document permissions are in a token, and their shape (see docsClaim). Default `docs`. */
  docsClaim?: string | undefined;
  issuer?: string;
  audience?: string;
  /**
   * Longest lifetime a token may have, in ms: `exp` minus `iat` (or minus now, when that is
   * later or there is no `iat`). Tokens without `exp` are refused. Default 24 h.
   */
  maxTokenLifetimeMs?: number;
}

/**
 * JWT access: tokens carry a `docs` claim mapping document names to 'read' or 'write'
 * (another claim or shape with `docsClaim`). A key ending in '*' is a prefix pattern ("team-a/*",
 * or "*" for all documents). The exact name wins over patterns; among patterns, the longest
 * prefix wins.
 *
 *   { "sub": "alice", "exp": 1767225600, "docs": { "notes/*": "write", "handbook": "read" } }
 *
 * Tokens are signed with the shared secret (HS*) or by an identity provider (RS*, PS*, ES*,
 * EdDSA: its public keys or its JWK Set URL; see jwtVerifier). Relay trust (the relay claim: a
 * peer of the mesh, trusted with fenced content) is taken only from tokens signed with the
 * shared secret, which the mesh's relays hold: never from an identity provider's token.
 */
export class JwtAccess implements AccessControl {
  readonly mode = 'jwt' as const;
  private readonly verifier: JwtVerifier;

  constructor(private readonly options: JwtAccessOptions) {
    this.verifier = jwtVerifier(options);
  }

  async authorize(token: string | undefined, docName: string): Promise<AccessGrant> {
    return this.authorizeDoc(await this.authenticate(token), docName);
  }

  async authenticate(token: string | undefined): Promise<Principal> {
    if (!token) throw new AuthError('unauthorized', 'a token is required');
    let payload: jose.JWTPayload;
    let protectedHeader: jose.JWTHeaderParameters;
    try {
      ({ payload, protectedHeader } = await jose.jwtVerify(token, this.verifier.key, {
        algorithms: this.verifier.algorithms,
        ...(this.options.issuer ? { issuer: this.options.issuer } : {}),
        ...(this.options.audience ? { audience: this.options.audience } : {}),
      }));
    } catch (err) {
      const why = err instanceof jose.errors.JWTExpired ? 'token expired' : `invalid token (${(err as { code?: string }).code ?? 'malformed'})`;
      throw new AuthError('unauthorized', why, { cause: err });
    }
    assertBoundedLifetime(payload, this.options.maxTokenLifetimeMs ?? DEFAULT_MAX_TOKEN_LIFETIME_MS);
    const relay = payload[RELAY_CLAIM] === true && this.verifier.isHmac(protectedHeader);
    return {
      ...(payload.sub ? { subject: payload.sub } : {}),
      expiresAt: payload.exp! * 1000,
      ...(relay ? { relay: true } : {}),
      // A relay credential (minted by relayCredential) names its documents in `docs`, whatever
      // claim the identity provider's tokens use.
      docs: docsClaim(payload, relay ? 'docs' : this.options.docsClaim),
    };
  }

  authorizeDoc(principal: Principal, docName: string): AccessGrant {
    // A socket that authenticated once may outlive its token by a timer's slack.
    if (principal.expiresAt !== undefined && principal.expiresAt <= Date.now()) throw new AuthError('unauthorized', 'token expired');
    const permission = permissionFor(principal.docs, docName);
    if (!permission) throw new AuthError('forbidden', `no access to document "${docName}"`);
    const { docs: _docs, ...who } = principal;
    return { permission, ...who };
  }
}

const DEFAULT_MAX_TOKEN_LIFETIME_MS = 24 * 3600_000;

/**
 * A token must expire, and not too late: a leaked token without `exp` would grant access
 * forever. The lifetime counts from `iat`, but never from a future `iat` (a token issued "next
 * year" for an hour would otherwise pass while being valid until then): from min(iat, now).
 */
function assertBoundedLifetime(payload: jose.JWTPayload, maxLifetimeMs: number): void {
  if (typeof payload.exp !== 'number') throw new AuthError('unauthorized', 'invalid token: it has no expiry (exp claim required)');
  const nowMs = Date.now();
  const fromMs = typeof payload.iat === 'number' ? Math.min(payload.iat * 1000, nowMs) : nowMs;
  const lifetimeMs = payload.exp * 1000 - fromMs;
  if (lifetimeMs > maxLifetimeMs) {
    throw new AuthError(
      'unauthorized',
      `invalid token: it is valid for ${Math.round(lifetimeMs / 1000)} s, longer than the relay accepts (${Math.round(maxLifetimeMs / 1000)} s, --max-token-lifetime-ms)`,
    );
  }
}

/** The permission the `docs` claim gives on `docName`, or undefined. */
export function permissionFor(docs: unknown, docName: string): Permission | undefined {
  if (typeof docs !== 'object' || docs === null) return undefined;
  const entries = Object.entries(docs as Record<string, unknown>).filter(
    (e): e is [string, Permission] => e[1] === 'read' || e[1] === 'write',
  );
  const exact = entries.find(([k]) => k === docName);
  if (exact) return exact[1];
  let best: [string, Permission] | undefined;
  for (const [pattern, perm] of entries) {
    if (!pattern.endsWith('*')) continue;
    const prefix = pattern.slice(0, -1);
    if (docName.startsWith(prefix) && (!best || prefix.length > best[0].length)) best = [prefix, perm];
  }
  return best?.[1];
}
