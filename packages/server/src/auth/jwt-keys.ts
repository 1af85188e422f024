import { createPublicKey, type KeyObject } from 'node:crypto';
import * as jose from 'jose';

/** Where the keys that verify JWTs come from (any combination; at least one). */
export interface JwtKeySources {
  /** HMAC secret (HS256/384/512), shared with whoever mints the tokens (and the mesh's relays). */
  secret?: string | undefined;
  /**
   * Public keys of the token issuer (RS*, PS*, ES*, EdDSA): PEM text (SPKI "PUBLIC KEY", or an
   * X.509 certificate), a JWK, or a JWK Set as JSON text. A key with a `kid` verifies only tokens
   * whose header names that `kid`; a key without one verifies any token of its type.
   */
  publicKeys?: string[] | undefined;
  /**
   * URL of the issuer's JWK Set (an identity provider's `jwks_uri`). Fetched on first use and
   * cached; a token whose `kid` is not in the cached set makes it fetch again (at most every
   * 30 s), so the provider's key rotation needs no restart. A fetch that fails or times out
   * (5 s) refuses the token being verified as unauthorized; cached keys keep working.
   */
  jwksUrl?: string | undefined;
  /** Least time between two fetches of the JWK Set (a token with an unknown `kid` fetches again). Default 30 s. */
  jwksCooldownMs?: number | undefined;
}

/** Algorithms accepted with public keys: whichever the key's type allows (jose checks the pair). */
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
const HMAC = ['HS256', 'HS384', 'HS512'];

/**
 * How a token's signature is checked: the algorithms accepted and the key for a token's
 * header. An HS* token is checked with the secret only, any other with the public keys or the
 * JWK Set only, so a public key can never be used as an HMAC secret (algorithm confusion), and
 * `none` is never accepted.
 */
export interface JwtVerifier {
  readonly algorithms: string[];
  key: jose.JWTVerifyGetKey;
  /** Whether a token with this header was checked with the HMAC secret (shared with the mesh). */
  isHmac(header: jose.JWTHeaderParameters): boolean;
}

export function jwtVerifier(sources: JwtKeySources): JwtVerifier {
  const secret = sources.secret ? new TextEncoder().encode(sources.secret) : null;
  const keys = (sources.publicKeys ?? []).flatMap(parsePublicKeys);
  const remote = sources.jwksUrl ? remoteKeys(sources.jwksUrl, sources.jwksCooldownMs ?? 30_000) : null;
  if (!secret && keys.length === 0 && !remote) throw new RangeError('JWT auth needs a secret, a public key or a JWKS URL');
  const algorithms = [...(secret ? HMAC : []), ...(keys.length > 0 || remote ? ASYMMETRIC : [])];
  return {
    algorithms,
    isHmac: (header) => HMAC.includes(header.alg),
    key: async (header, token) => {
      if (HMAC.includes(header.alg)) {
        if (!secret) throw new jose.errors.JOSEAlgNotAllowed('HMAC tokens are not accepted: the relay has no shared secret');
        return secret;
      }
      const local = keys.filter((k) => (k.kid === undefined || k.kid === header.kid) && (k.alg === undefined || k.alg === header.alg));
      // One candidate: jwtVerify itself says whether the signature holds.
      if (local.length === 1 && !remote) return local[0]!.key;
      // Several (keys without kid): the one that verifies; then the JWK Set, if any.
      const found = await firstVerifying(local.map((k) => k.key), token);
      if (found) return found;
      if (remote) return remote(header, token);
      throw new jose.errors.JWKSNoMatchingKey('no configured public key verifies the token');
    },
  };
}

/** The first of `keys` that verifies `token`'s signature, or undefined. */
async function firstVerifying(keys: Iterable<jose.CryptoKey | KeyObject> | AsyncIterable<jose.CryptoKey | KeyObject>, token: jose.FlattenedJWSInput): Promise<jose.CryptoKey | KeyObject | undefined> {
  for await (const key of keys) {
    try {
      await jose.flattenedVerify(token, key, { algorithms: ASYMMETRIC });
      return key;
    } catch {
      // the next one
    }
  }
  return undefined;
}

/**
 * An identity provider's JWK Set, fetched by jose (cached, fetched again for an unknown `kid`
 * at most every `cooldownMs`, and when older than 10 minutes). Two things jose does not do:
 * while the provider cannot be reached, the last set fetched keeps verifying (a refetch that
 * fails does not refuse every token); and a token without `kid` that several keys of the set
 * fit is checked against each, as local keys are.
 */
function remoteKeys(url: string, cooldownMs: number): jose.JWTVerifyGetKey {
  const remote = jose.createRemoteJWKSet(new URL(url), { timeoutDuration: 5_000, cooldownDuration: cooldownMs, cacheMaxAge: 10 * 60_000 });
  let lastGood: jose.JSONWebKeySet | undefined;
  return async (header, token) => {
    try {
      const key = await remote(header, token);
      lastGood = remote.jwks() ?? lastGood;
      return key;
    } catch (err) {
      if (err instanceof jose.errors.JWKSMultipleMatchingKeys) {
        lastGood = remote.jwks() ?? lastGood;
        const found = await firstVerifying(err as unknown as AsyncIterable<jose.CryptoKey>, token);
        if (found) return found;
        throw err;
      }
      // Unreachable, failing or slow provider: the keys fetched last, if any.
      const unreachable = !(err instanceof jose.errors.JWKSNoMatchingKey) && !(err instanceof jose.errors.JWKInvalid);
      if (unreachable && lastGood) return jose.createLocalJWKSet(lastGood)(header, token);
      if (unreachable) throw new jose.errors.JOSEError(`the identity provider's signing keys could not be fetched (${(err as Error).message})`);
      throw err;
    }
  };
}

/** Public keys of PEM text, a JWK or a JWK Set (JSON); throws RangeError saying what is wrong. */
export function parsePublicKeys(text: string): { key: KeyObject; kid?: string; alg?: string }[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new RangeError('a public key given as JSON must be a JWK or a JWK Set');
    }
    const jwks = (parsed as { keys?: unknown }).keys;
    if (jwks !== undefined && !Array.isArray(jwks)) throw new RangeError('a JWK Set\'s "keys" must be an array');
    const list = Array.isArray(jwks) ? jwks : [parsed];
    // Keys for encryption (Keycloak publishes one next to its signing keys) never verify tokens.
    return list.filter((jwk) => (jwk as { use?: unknown }).use !== 'enc').map((jwk) => {
      if (typeof jwk !== 'object' || jwk === null || 'd' in jwk) throw new RangeError('a public JWK must be an object without private parts ("d")');
      let key: KeyObject;
      try {
        key = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
      } catch (err) {
        throw new RangeError(`not a public key JWK: ${(err as Error).message}`);
      }
      if (key.asymmetricKeyType === undefined) throw new RangeError('not an asymmetric public key');
      const { kid, alg } = jwk as { kid?: unknown; alg?: unknown };
      return { key, ...(typeof kid === 'string' ? { kid } : {}), ...(typeof alg === 'string' ? { alg } : {}) };
    });
  }
  if (/PRIVATE KEY-----/.test(trimmed)) throw new RangeError("a private key was given where the public key goes: give the issuer's public key");
  // A file may hold several (an identity provider's rotation: the old key and the new one).
  const blocks = trimmed.match(/-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----/g);
  if (!blocks) throw new RangeError('a public key must be PEM text (-----BEGIN PUBLIC KEY-----), a JWK or a JWK Set');
  return blocks.map((block) => {
    let key: KeyObject;
    try {
      key = createPublicKey(block);
    } catch (err) {
      throw new RangeError(`not a PEM public key or certificate: ${(err as Error).message}`);
    }
    if (key.asymmetricKeyType === undefined) throw new RangeError('not an asymmetric public key');
    return { key };
  });
}
