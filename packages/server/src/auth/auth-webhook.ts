import { createHash } from 'node:crypto';
import type { AuthorizeAnswer, AuthorizeCallback } from './callback-access.js';

/** Answers kept at most (the least recently used go first). */
const MAX_CACHED = 10_000;

/**
 * The CLI's `--auth-webhook <url>`: an authorization callback (CallbackAccess) that POSTs
 * `{ "token": ..., "docName": ... }` as JSON to the app's endpoint and takes its answer
 * `{ "permission": "read" | "write" | "none", "identity"?: string, "expiresAt"?: ms }` (HTTP 200;
 * 403 means none; anything else, or no answer within `timeoutMs`, refuses that document for now
 * with 'unavailable'). Answers are kept `cacheMs` per token and document (keyed by the token's
 * SHA-256: the cache holds no token), at most MAX_CACHED of them.
 */
export function authWebhook(url: string, options: { cacheMs: number; timeoutMs: number }): AuthorizeCallback {
  const cache = new Map<string, { answer: AuthorizeAnswer; until: number }>();
  return async ({ token, docName }) => {
    const key = `${createHash('sha256').update(token ?? '').digest('base64')}\0${docName}`;
    const hit = cache.get(key);
    if (hit && hit.until > Date.now()) return hit.answer;
    cache.delete(key);
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: token ?? null, docName }),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    let answer: AuthorizeAnswer;
    if (res.status === 403) {
      answer = { permission: 'none' };
      await res.body?.cancel();
    } else if (res.status === 200) {
      const body = (await res.json()) as Partial<AuthorizeAnswer>;
      if (body.permission !== 'read' && body.permission !== 'write' && body.permission !== 'none') throw new Error('the auth webhook answered no permission');
      answer = {
        permission: body.permission,
        ...(typeof body.identity === 'string' ? { identity: body.identity } : {}),
        ...(typeof body.expiresAt === 'number' ? { expiresAt: body.expiresAt } : {}),
      };
    } else {
      await res.body?.cancel();
      throw new Error(`the auth webhook answered HTTP ${res.status}`);
    }
    if (options.cacheMs > 0) {
      cache.set(key, { answer, until: Date.now() + options.cacheMs });
      if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
    }
    return answer;
  };
}
