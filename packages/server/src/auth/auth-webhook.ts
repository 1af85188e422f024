import { createHash } from 'node:crypto';
import { AnswerCache } from './answer-cache.js';
import type { AuthorizeAnswer, AuthorizeCallback } from './callback-access.js';

/** Answers kept at most (the least recently used go first). */
export const MAX_CACHED_ANSWERS = 10_000;

/**
 * The CLI's `--auth-webhook <url>`: an authorization callback (CallbackAccess) that POSTs
 * `{ "token": ..., "docName": ... }` as JSON to the app's endpoint and takes its answer
 * `{ "permission": "read" | "write" | "none", "identity"?: string, "expiresAt"?: ms }` (HTTP 200;
 * 403 means none; anything else, or no answer within `timeoutMs`, refuses that document for now
 * with 'unavailable'). Answers are kept `cacheMs` per token and document (keyed by the token's
 * SHA-256: the cache holds no token), never past their own `expiresAt`, at most `maxCached`
 * (MAX_CACHED_ANSWERS) of them, the least recently used forgotten first (see AnswerCache).
 */
export function authWebhook(url: string, options: { cacheMs: number; timeoutMs: number; maxCached?: number }): AuthorizeCallback {
  const cache = new AnswerCache<AuthorizeAnswer>(options.maxCached ?? MAX_CACHED_ANSWERS);
  // Questions asked now: the same token and document asked again meanwhile (a client opening
  // one document on several sockets, a reconnect storm) waits for the same answer.
  const asking = new Map<string, Promise<AuthorizeAnswer>>();
  return ({ token, docName }) => {
    const key = `${createHash('sha256').update(token ?? '').digest('base64')}\0${docName}`;
    const hit = cache.get(key);
    if (hit) return hit;
    let answer = asking.get(key);
    if (!answer) {
      answer = ask(url, token, docName, options.timeoutMs).then((a) => {
        // Not past the permission's own end: a kept answer would refuse the document until then.
        if (options.cacheMs > 0) cache.set(key, a, Math.min(Date.now() + options.cacheMs, a.expiresAt ?? Infinity));
        return a;
      });
      asking.set(key, answer);
      void answer.finally(() => asking.delete(key)).catch(() => {});
    }
    return answer;
  };
}

/** One POST to the app's endpoint; its answer, or throws (the document is then refused for now). */
async function ask(url: string, token: string | undefined, docName: string, timeoutMs: number): Promise<AuthorizeAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: token ?? null, docName }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (res.status === 403) {
    await res.body?.cancel();
    return { permission: 'none' };
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new Error(`the auth webhook answered HTTP ${res.status}`);
  }
  const body = (await res.json()) as Partial<AuthorizeAnswer>;
  if (body.permission !== 'read' && body.permission !== 'write' && body.permission !== 'none') throw new Error('the auth webhook answered no permission');
  return {
    permission: body.permission,
    ...(typeof body.identity === 'string' ? { identity: body.identity } : {}),
    ...(typeof body.expiresAt === 'number' ? { expiresAt: body.expiresAt } : {}),
  };
}
