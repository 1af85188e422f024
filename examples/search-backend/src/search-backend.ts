import { EventEmitter } from 'node:events';
import express from 'express';
import { SearchIndex } from './search-index.js';
import { verified } from './webhook-signature.js';

export interface SearchBackendOptions {
  /** The relay's --webhook-secret. */
  secret: string;
  /** A token the relay accepts with read access to the documents (for documentUrl), if it has auth. */
  relayToken?: string;
}

/** What the relay POSTs (see the README's Webhooks section). */
interface WebhookEvent {
  id: string;
  type: string;
  createdAt: string;
  data: { docName: string; document?: unknown; documentUrl?: string };
}

/** Event ids already handled, at most this many: deliveries are at least once. */
const SEEN_MAX = 10_000;

/**
 * The example backend: an express app with `POST /webhooks` (the relay's endpoint) and
 * `GET /search?q=words`. A `document.changed` brings the document's JSON (with
 * `--webhook-document json`) or the URL to fetch it from; the index is updated and `indexed`
 * is emitted. Anything that fails answers 5xx, so the relay delivers it again later.
 */
export function createSearchBackend(options: SearchBackendOptions): { app: express.Express; index: SearchIndex; events: EventEmitter<{ indexed: [docName: string] }> } {
  const index = new SearchIndex();
  const events = new EventEmitter<{ indexed: [docName: string] }>();
  const seen = new Set<string>();
  /** The time of the latest event applied per document: deliveries come in no set order, and a retried older one must not overwrite newer content. */
  const latest = new Map<string, string>();
  const app = express();

  app.post('/webhooks', express.raw({ type: 'application/json', limit: '8mb' }), async (req, res) => {
    const raw = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
    if (!verified(options.secret, req.headers, raw)) {
      res.status(401).json({ error: 'bad signature' });
      return;
    }
    const event = JSON.parse(raw) as WebhookEvent;
    if (seen.has(event.id)) {
      res.status(204).end(); // a retry of what was handled: acknowledge again, do nothing
      return;
    }
    const docName = event.data.docName;
    const stale = (latest.get(docName) ?? '') > event.createdAt; // ISO times compare as strings
    try {
      if (stale) {
        // An older event of this document than one already applied: acknowledged, not applied.
      } else if (event.type === 'document.changed') {
        const json = 'document' in event.data ? event.data.document : await fetchDocument(event.data.documentUrl!, options.relayToken);
        index.put(docName, json);
        latest.set(docName, event.createdAt);
        events.emit('indexed', docName);
      } else if (event.type === 'document.deleted') {
        index.remove(docName);
        latest.set(docName, event.createdAt);
        events.emit('indexed', docName);
      }
    } catch (err) {
      res.status(503).json({ error: (err as Error).message }); // the relay retries
      return;
    }
    seen.add(event.id);
    if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value!);
    res.status(204).end();
  });

  app.get('/search', (req, res) => {
    res.json({ docs: index.search(String(req.query['q'] ?? '')) });
  });

  return { app, index, events };
}

async function fetchDocument(url: string, token: string | undefined): Promise<unknown> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
  return res.json();
}
