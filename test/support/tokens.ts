import * as jose from 'jose';

/** Signs `claims` as an HS256 JWT with `secret` (what a relay started with --auth-secret verifies). */
export function signToken(secret: string, claims: jose.JWTPayload): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
}

export interface TokenFor {
  /** The identity (`sub`); leases and Yjs client ids belong to it. */
  sub?: string;
  /** The `docs` claim: document name or prefix pattern -> permission. Default: write to everything. */
  docs?: Record<string, 'read' | 'write'>;
  /** Seconds until `exp` (relays refuse tokens without one, and past --max-token-lifetime-ms). Default 600. */
  lifetimeS?: number;
  /** Any other claims. */
  claims?: jose.JWTPayload;
}

/** A user's token: `sub`, `docs`, `iat` now and `exp` `lifetimeS` later. */
export function mintToken(secret: string, t: TokenFor = {}): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return signToken(secret, {
    iat,
    exp: iat + (t.lifetimeS ?? 600),
    docs: t.docs ?? { '*': 'write' },
    ...(t.sub !== undefined ? { sub: t.sub } : {}),
    ...t.claims,
  });
}
