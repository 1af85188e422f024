import type { RelayOptions } from '../config.js';
import { CliError, int, type Flag } from '../cli-flag.js';
import { WEBHOOK_EVENTS, parseWebhookEndpoints, type WebhookOptions } from './webhook-options.js';

/** The `webhooks` options being built from flags (endpoints and secret may come in any order). */
function webhooks(o: RelayOptions): WebhookOptions & { endpoints: WebhookOptions['endpoints'] } {
  o.webhooks ??= { endpoints: [], secret: '' };
  return o.webhooks as WebhookOptions;
}

const ms = (flag: string, key: 'timeoutMs' | 'retryBaseMs' | 'retryMaxMs' | 'expireMs' | 'concurrency' | 'maxQueued' | 'maxJsonBytes', help: string, env: string, min = 1): Flag => ({
  flag,
  env,
  type: 'string',
  help,
  apply: (o, v) => (webhooks(o)[key] = int(`--${flag}`, v, min)),
});

/** The webhook flags (see WebhookOptions; the README's flag table lists them). */
export const WEBHOOK_FLAGS: Flag[] = [
  {
    flag: 'webhook',
    env: 'CAPSYNC_WEBHOOK',
    type: 'string',
    multiple: true,
    help: `Endpoint the relay POSTs signed events to: URL (every event) or EVENT+EVENT@URL; repeat, or a comma list. Events: ${WEBHOOK_EVENTS.join(', ')}. Default none`,
    apply: (o, v) => {
      const endpoints = parseWebhookEndpoints(v);
      for (const e of endpoints) {
        if (!/^https?:\/\/./.test(e.url)) throw new CliError(`--webhook: "${e.url}" is not an http(s) URL`);
        for (const ev of e.events ?? []) if (!(WEBHOOK_EVENTS as readonly string[]).includes(ev)) throw new CliError(`--webhook: unknown event "${ev}"`);
      }
      webhooks(o).endpoints = endpoints;
    },
  },
  { flag: 'webhook-secret', env: 'CAPSYNC_WEBHOOK_SECRET', type: 'string', help: 'Key of the HMAC-SHA256 signature of every webhook delivery (required with --webhook)', apply: (o, v) => (webhooks(o).secret = v) },
  {
    flag: 'webhook-document',
    env: 'CAPSYNC_WEBHOOK_DOCUMENT',
    type: 'string',
    help: 'What document.changed carries: url (where to GET its JSON), json (the JSON, up to --webhook-max-json-bytes) or none. Default url',
    apply: (o, v) => {
      if (v !== 'url' && v !== 'json' && v !== 'none') throw new CliError(`--webhook-document must be url, json or none, got "${v}"`);
      webhooks(o).document = v;
    },
  },
  { flag: 'webhook-document-base-url', env: 'CAPSYNC_WEBHOOK_DOCUMENT_BASE_URL', type: 'string', help: "Base of documentUrl in payloads (the relay as the backend reaches it). Default the relay's own URL", apply: (o, v) => (webhooks(o).documentBaseUrl = v) },
  ms('webhook-max-json-bytes', 'maxJsonBytes', 'Largest document JSON put in a payload; past it the URL. Default 1048576', 'CAPSYNC_WEBHOOK_MAX_JSON_BYTES', 0),
  ms('webhook-timeout-ms', 'timeoutMs', 'How long one delivery attempt may take. Default 10000', 'CAPSYNC_WEBHOOK_TIMEOUT_MS'),
  ms('webhook-retry-base-ms', 'retryBaseMs', 'First retry after about this long, doubling per attempt (with jitter). Default 1000', 'CAPSYNC_WEBHOOK_RETRY_BASE_MS'),
  ms('webhook-retry-max-ms', 'retryMaxMs', 'Longest wait between attempts. Default 3600000', 'CAPSYNC_WEBHOOK_RETRY_MAX_MS'),
  ms('webhook-expire-ms', 'expireMs', 'A delivery not acknowledged this long after its event is given up (counted as failed). Default 86400000', 'CAPSYNC_WEBHOOK_EXPIRE_MS'),
  ms('webhook-concurrency', 'concurrency', 'Delivery attempts running at once, at most. Default 16', 'CAPSYNC_WEBHOOK_CONCURRENCY'),
  { flag: 'change-debounce-ms', env: 'CAPSYNC_CHANGE_DEBOUNCE_MS', type: 'string', help: "document.changed (and onChange): quiet time after a document's last change before it is sent. Default 1000", apply: (o, v) => (o.changeDebounceMs = int('--change-debounce-ms', v, 0)) },
  { flag: 'change-max-wait-ms', env: 'CAPSYNC_CHANGE_MAX_WAIT_MS', type: 'string', help: 'document.changed (and onChange): longest wait after a change while changes go on. Default 10000', apply: (o, v) => (o.changeMaxWaitMs = int('--change-max-wait-ms', v, 1)) },
  ms('webhook-max-queued', 'maxQueued', 'Deliveries queued at most; events past it are refused (capsync_webhook_refused_total). Default 100000', 'CAPSYNC_WEBHOOK_MAX_QUEUED'),
];
