import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signing of webhook deliveries, in the layout of the Standard Webhooks specification
 * (standardwebhooks.com), so receivers can check them with its libraries or in a few lines:
 *
 *   webhook-id:        the event's id (the same on every attempt: the idempotency key)
 *   webhook-timestamp: seconds since the epoch when this attempt was signed
 *   webhook-signature: "v1,<base64 HMAC-SHA256(key, `${id}.${timestamp}.${body}`)>"
 *
 * The key is the secret's bytes (UTF-8), or, for a secret of the form `whsec_<base64>` (the
 * specification's), the decoded bytes. Signing the timestamp with the body lets a receiver
 * refuse a captured delivery replayed later (see `verifyWebhook`'s tolerance).
 */
export const WEBHOOK_HEADERS = { id: 'webhook-id', timestamp: 'webhook-timestamp', signature: 'webhook-signature' } as const;

export function webhookKey(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'utf8');
}

/** The three headers of one attempt of delivering `body` for event `id`, signed at `nowMs`. */
export function signWebhook(key: Buffer, id: string, body: string, nowMs = Date.now()): Record<string, string> {
  const timestamp = String(Math.floor(nowMs / 1000));
  return {
    [WEBHOOK_HEADERS.id]: id,
    [WEBHOOK_HEADERS.timestamp]: timestamp,
    [WEBHOOK_HEADERS.signature]: `v1,${mac(key, id, timestamp, body)}`,
  };
}

/** A delivery whose signature or timestamp does not check out (code 'bad-signature' or 'stale-timestamp'). */
export class WebhookSignatureError extends Error {
  constructor(
    readonly code: 'bad-signature' | 'stale-timestamp',
    message: string,
  ) {
    super(message);
    this.name = 'WebhookSignatureError';
  }
}

/**
 * For receivers: checks a delivery's headers against its raw body (the bytes received, before
 * any JSON parsing) and returns the parsed body. Throws WebhookSignatureError when a header is
 * missing, no signature matches (the header may list several, space separated, during a secret
 * rotation) or the timestamp is more than `toleranceS` (default 300) away from now.
 */
export function verifyWebhook(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
  options: { toleranceS?: number; nowMs?: number } = {},
): unknown {
  const header = (name: string): string => {
    const v = headers[name];
    const value = Array.isArray(v) ? v[0] : v;
    if (!value) throw new WebhookSignatureError('bad-signature', `header ${name} is missing`);
    return value;
  };
  const id = header(WEBHOOK_HEADERS.id);
  const timestamp = header(WEBHOOK_HEADERS.timestamp);
  const signatures = header(WEBHOOK_HEADERS.signature);
  const seconds = Number(timestamp);
  const tolerance = options.toleranceS ?? 300;
  if (!/^\d+$/.test(timestamp) || Math.abs((options.nowMs ?? Date.now()) / 1000 - seconds) > tolerance) {
    throw new WebhookSignatureError('stale-timestamp', `webhook timestamp ${timestamp} is more than ${tolerance} s from now`);
  }
  const expected = Buffer.from(mac(webhookKey(secret), id, timestamp, body));
  const matches = signatures.split(' ').some((s) => {
    const [version, sig] = s.split(',', 2);
    const given = Buffer.from(sig ?? '');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!matches) throw new WebhookSignatureError('bad-signature', 'no webhook signature matches the body with this secret');
  return JSON.parse(body) as unknown;
}

function mac(key: Buffer, id: string, timestamp: string, body: string): string {
  return createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
}
