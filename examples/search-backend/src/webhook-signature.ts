import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The check of a capsync webhook, in a few lines (the Standard Webhooks layout): the signature
 * is HMAC-SHA256 of `${webhook-id}.${webhook-timestamp}.${raw body}` with the shared secret,
 * base64, after "v1,". Checked on the raw bytes, before any JSON parsing; a timestamp more than
 * five minutes away is refused, so a captured delivery cannot be replayed later.
 */
export function verified(secret: string, headers: Record<string, string | string[] | undefined>, rawBody: string, nowMs = Date.now()): boolean {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sig = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof ts !== 'string' || typeof sig !== 'string') return false;
  if (!/^\d+$/.test(ts) || Math.abs(nowMs / 1000 - Number(ts)) > 300) return false;
  const expected = Buffer.from('v1,' + createHmac('sha256', secret).update(`${id}.${ts}.${rawBody}`).digest('base64'));
  return sig.split(' ').some((s) => s.length === expected.length && timingSafeEqual(Buffer.from(s), expected));
}
