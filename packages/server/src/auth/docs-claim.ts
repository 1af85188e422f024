import type { Permission } from './access.js';

/**
 * Where a token's document permissions are, and in which shape: identity providers put custom
 * claims under names of their own (Auth0: "https://example.com/docs", Keycloak: nested objects).
 *
 * `path` (`--auth-docs-claim`, default `docs`): a top-level claim of exactly that name, else a
 * dot-separated path into nested objects ("app_metadata.capsync.docs"); a claim whose name has
 * dots itself is matched whole ("https://app.example/claims.docs": the `docs` key inside the
 * claim "https://app.example/claims").
 *
 * Shapes understood, each naming documents or prefix patterns ending in '*' (see permissionFor):
 * - a map of name or pattern to 'read' | 'write': `{ "notes/*": "write", "handbook": "read" }`;
 * - lists by permission: `{ "read": ["handbook"], "write": ["notes/*"] }` (write wins where both);
 * - a list of names or patterns, all 'write': `["notes/*", "handbook"]`.
 * Anything else grants nothing (a token without the claim is valid but may open no document).
 */
export function docsClaim(payload: Record<string, unknown>, path = 'docs'): Record<string, Permission> | undefined {
  return normalize(claimAt(payload, path));
}

function claimAt(at: unknown, path: string): unknown {
  if (typeof at !== 'object' || at === null || Array.isArray(at)) return undefined;
  const obj = at as Record<string, unknown>;
  if (Object.hasOwn(obj, path)) return obj[path];
  // Claim names may hold dots themselves ("https://app.example/claims"): the longest name that
  // starts the path, then the rest of the path inside it.
  let best: string | undefined;
  for (const key of Object.keys(obj)) if (path.startsWith(key + '.') && (best === undefined || key.length > best.length)) best = key;
  return best === undefined ? undefined : claimAt(obj[best], path.slice(best.length + 1));
}

function normalize(value: unknown): Record<string, Permission> | undefined {
  if (Array.isArray(value)) return fromLists([], value);
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const keys = Object.keys(v);
  if (keys.length > 0 && keys.every((k) => k === 'read' || k === 'write') && keys.every((k) => Array.isArray(v[k]))) {
    return fromLists((v['read'] as unknown[] | undefined) ?? [], (v['write'] as unknown[] | undefined) ?? []);
  }
  const out: Record<string, Permission> = Object.create(null) as Record<string, Permission>;
  for (const [k, p] of Object.entries(v)) if (p === 'read' || p === 'write') out[k] = p;
  return out;
}

function fromLists(read: unknown[], write: unknown[]): Record<string, Permission> {
  const out: Record<string, Permission> = Object.create(null) as Record<string, Permission>;
  for (const name of read) if (typeof name === 'string') out[name] = 'read';
  for (const name of write) if (typeof name === 'string') out[name] = 'write';
  return out;
}
