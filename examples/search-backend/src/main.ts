/**
 * Runs the search backend: PORT (default 4100), CAPSYNC_WEBHOOK_SECRET (the relay's
 * --webhook-secret), RELAY_TOKEN (a read token for documentUrl, when the relay has auth).
 */
import { createSearchBackend } from './search-backend.js';

const secret = process.env['CAPSYNC_WEBHOOK_SECRET'];
if (!secret) {
  console.error('set CAPSYNC_WEBHOOK_SECRET to the relay\'s --webhook-secret');
  process.exit(1);
}
const port = Number(process.env['PORT'] ?? 4100);
const { app } = createSearchBackend({ secret, ...(process.env['RELAY_TOKEN'] ? { relayToken: process.env['RELAY_TOKEN'] } : {}) });
app.listen(port, '127.0.0.1', () => console.log(`search backend on http://127.0.0.1:${port}: webhooks at /webhooks, search at /search?q=`));
