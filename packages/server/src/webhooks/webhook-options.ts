/** Webhook events, in the order the README lists them. */
export const WEBHOOK_EVENTS = ['document.changed', 'document.created', 'document.deleted', 'connection.opened', 'connection.closed'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

export interface WebhookEndpoint {
  url: string;
  /** The events this endpoint gets; default all. */
  events?: readonly WebhookEventType[];
}

/**
 * Webhooks (`webhooks` in createRelay, `--webhook` and the `--webhook-*` flags): events POSTed,
 * signed, to the app's endpoints, queued durably in the relay's storage first and retried until
 * acknowledged or expired (see WebhookDispatcher). `document.changed` is debounced like the
 * onChange hook (`changeDebounceMs`, `changeMaxWaitMs`).
 */
export interface WebhookOptions {
  /** Endpoints: a URL (every event) or a URL with the events it takes. */
  endpoints: readonly (string | WebhookEndpoint)[];
  /** Key of the deliveries' HMAC-SHA256 signatures (see webhook-signature.ts). Required. */
  secret: string;
  /**
   * What `document.changed` carries besides the document's name: `url` (default) where to GET
   * its JSON (`documentUrl`), `json` the document's JSON itself (up to `maxJsonBytes`, past it the
   * URL and `jsonTooLarge: true`), `none` nothing more.
   */
  document?: 'url' | 'json' | 'none';
  /** Base of `documentUrl` (the relay as the backend reaches it, e.g. behind a load balancer). Default the relay's own http URL. */
  documentBaseUrl?: string;
  /** Largest document JSON put in a payload. Default 1 MiB. */
  maxJsonBytes?: number;
  /** How long one attempt may take. Default 10000. */
  timeoutMs?: number;
  /** First retry after about this long, doubling per attempt. Default 1000. */
  retryBaseMs?: number;
  /** Longest wait between attempts. Default 3600000 (1 h). */
  retryMaxMs?: number;
  /** A delivery not acknowledged this long after its event is given up (counted as failed). Default 86400000 (24 h). */
  expireMs?: number;
  /** Attempts running at once, at most. Default 16. */
  concurrency?: number;
  /** Deliveries queued at most (all relays on the storage); events past it are refused and counted. Default 100000. */
  maxQueued?: number;
}

export interface ResolvedWebhookOptions {
  endpoints: { url: string; events: readonly WebhookEventType[] | 'all' }[];
  secret: string;
  document: 'url' | 'json' | 'none';
  documentBaseUrl: string | undefined;
  maxJsonBytes: number;
  timeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  expireMs: number;
  concurrency: number;
  maxQueued: number;
}

/** Checks and completes `o`; throws RangeError on a bad value. Undefined when no endpoint is given. */
export function resolveWebhookOptions(o: WebhookOptions | undefined): ResolvedWebhookOptions | undefined {
  if (!o || o.endpoints.length === 0) return undefined;
  if (!o.secret) throw new RangeError('webhooks: a secret is required (every delivery is signed)');
  const endpoints = o.endpoints.map((e) => {
    const { url, events } = typeof e === 'string' ? { url: e, events: undefined } : e;
    if (!/^https?:\/\/./.test(url)) throw new RangeError(`webhooks: an endpoint must be an http(s) URL, got "${url}"`);
    for (const ev of events ?? []) {
      if (!(WEBHOOK_EVENTS as readonly string[]).includes(ev)) throw new RangeError(`webhooks: unknown event "${ev}" (one of ${WEBHOOK_EVENTS.join(', ')})`);
    }
    return { url, events: events && events.length > 0 ? [...events] : ('all' as const) };
  });
  const document = o.document ?? 'url';
  if (!['url', 'json', 'none'].includes(document)) throw new RangeError(`webhooks.document must be url, json or none, got "${document}"`);
  const num = (name: string, v: number | undefined, d: number, min = 1): number => {
    const value = v ?? d;
    if (!Number.isFinite(value) || value < min) throw new RangeError(`webhooks.${name} must be a number of at least ${min}, got ${v}`);
    return value;
  };
  return {
    endpoints,
    secret: o.secret,
    document,
    documentBaseUrl: o.documentBaseUrl?.replace(/\/+$/, ''),
    maxJsonBytes: num('maxJsonBytes', o.maxJsonBytes, 1024 * 1024, 0),
    timeoutMs: num('timeoutMs', o.timeoutMs, 10_000),
    retryBaseMs: num('retryBaseMs', o.retryBaseMs, 1_000),
    retryMaxMs: num('retryMaxMs', o.retryMaxMs, 3_600_000),
    expireMs: num('expireMs', o.expireMs, 86_400_000),
    concurrency: num('concurrency', o.concurrency, 16),
    maxQueued: num('maxQueued', o.maxQueued, 100_000),
  };
}

/**
 * Parses the `--webhook` values: comma separated, each `URL` (every event) or
 * `EVENT+EVENT@URL` (say `document.changed+document.deleted@https://backend/hooks`).
 */
export function parseWebhookEndpoints(v: string): WebhookEndpoint[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const m = /^([a-z.+]+)@(https?:\/\/.+)$/.exec(entry);
      if (!m) return { url: entry };
      return { url: m[2]!, events: m[1]!.split('+').filter(Boolean) as WebhookEventType[] };
    });
}
