/**
 * The one reading of a token in a URL's query, shared by authentication (which reads it) and
 * logging (which must hide it). Both decide with `isTokenParam` on the *decoded* name, any case,
 * so `?token=`, `?TOKEN=` and `?%74oken=` are the same parameter to both: a URL can never carry
 * a token the relay accepts while its log line shows it.
 */

/** Shown in logs instead of a token's value. */
export const REDACTED = 'REDACTED';

/** True for a query parameter carrying a token: its decoded name is "token" in any case. */
export function isTokenParam(decodedName: string): boolean {
  return decodedName.toLowerCase() === 'token';
}

/** The query string of a request target or absolute URL ('' when none), without the '?' and any fragment. */
function queryOf(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return '';
  const hash = url.indexOf('#', q);
  return url.slice(q + 1, hash < 0 ? undefined : hash);
}

/** The first token in the URL's query (see `isTokenParam`), or undefined. */
export function tokenFromQuery(url: string): string | undefined {
  for (const [name, value] of new URLSearchParams(queryOf(url))) {
    if (isTokenParam(name)) return value;
  }
  return undefined;
}

/**
 * The URL (a request target like `/doc?x=1` or an absolute `ws://host/path?...`) as it may be
 * logged: every token parameter's value and any password in its user info replaced by
 * REDACTED. A URL with a query is rewritten in URLSearchParams' normal form, so what the log
 * shows is what the relay parsed.
 */
export function redactUrl(url: string | undefined): string {
  if (!url) return '';
  let out = url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@?#:]*):[^/@?#]*@/i, `$1:${REDACTED}@`);
  const q = out.indexOf('?');
  if (q < 0) return out;
  const hash = out.indexOf('#', q);
  const params = new URLSearchParams(queryOf(out));
  let redacted = false;
  const kept = new URLSearchParams();
  for (const [name, value] of params) {
    if (isTokenParam(name)) {
      redacted = true;
      kept.append(name, REDACTED);
    } else kept.append(name, value);
  }
  if (!redacted) return out;
  out = out.slice(0, q + 1) + kept.toString() + (hash < 0 ? '' : out.slice(hash));
  return out;
}
