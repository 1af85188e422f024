import * as jose from 'jose';

/** JWT claim that makes a token a relay credential (a peer of the mesh). */
export const RELAY_CLAIM = 'capsync_relay';
/** A minted relay credential's `sub`: this prefix and the relay's id. */
export const RELAY_SUBJECT_PREFIX = 'relay:';

/**
 * How long a minted relay credential lives (shorter if the mesh's --max-token-lifetime-ms is:
 * peers refuse longer ones); a fresh one is minted well before it runs out.
 */
const LIFETIME_S = 600;

export interface RelayCredentialOptions {
  /** Explicit credential (`peerToken`); used as is. */
  peerToken: string | undefined;
  /** Shared HMAC secret of the mesh; a credential is minted from it when no peerToken is set. */
  authSecret: string | undefined;
  authIssuer: string | undefined;
  authAudience: string | undefined;
  relayId: string;
  /** Longest token lifetime the mesh's relays accept (ms). */
  maxTokenLifetimeMs: number;
}

/**
 * The credential this relay presents to its peers (and to a lock authority relay), as a
 * function called before every connect: an explicit `peerToken`, else a short-lived JWT
 * minted from the mesh's shared secret (write on every document, plus the relay claim that
 * lets the peer trust fenced content it sends), else none (open relays).
 */
export function relayCredential(o: RelayCredentialOptions): () => Promise<string | undefined> {
  if (o.peerToken) {
    const token = o.peerToken;
    return async () => token;
  }
  if (!o.authSecret) return async () => undefined;
  const key = new TextEncoder().encode(o.authSecret);
  const lifetimeS = Math.max(1, Math.min(LIFETIME_S, Math.floor(o.maxTokenLifetimeMs / 1000)));
  const remintBeforeS = Math.floor(lifetimeS / 5);
  let cached: { token: string; expiresAt: number } | null = null;
  return async () => {
    const now = Math.floor(Date.now() / 1000);
    if (cached && cached.expiresAt - remintBeforeS > now) return cached.token;
    let jwt = new jose.SignJWT({ docs: { '*': 'write' }, [RELAY_CLAIM]: true })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(RELAY_SUBJECT_PREFIX + o.relayId)
      .setIssuedAt(now)
      .setExpirationTime(now + lifetimeS);
    if (o.authIssuer) jwt = jwt.setIssuer(o.authIssuer);
    if (o.authAudience) jwt = jwt.setAudience(o.authAudience);
    const token = await jwt.sign(key);
    cached = { token, expiresAt: now + lifetimeS };
    return token;
  };
}
