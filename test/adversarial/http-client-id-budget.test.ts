import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { startAttackedRelay } from '../support/attack.js';
import { manyClients } from '../support/client-ids.js';

/**
 * Third review of issue 11, finding 7: every HTTP request was the same UpdateSource (one module
 * constant in http/app.ts). Where there is no identity (an open relay, a token without `sub`),
 * `--max-clients-per-identity` counts the ids each source introduced, and the pending caps
 * count per source too: one POST introducing the budget's worth of client ids made every
 * later POST of anyone under a fresh client id (a backend service's fresh Y.Doc) fail 429
 * until the document was unloaded. Now HTTP sources are per client address (HttpSources).
 */

const BUDGET = 50;


/** POSTs `body` to `url` from the loopback address `localAddress` (another client, to the relay). */
function postFrom(localAddress: string, url: string, body: Uint8Array): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: target.port, path: target.pathname, method: 'POST', localAddress, headers: { 'content-length': body.byteLength } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      },
    );
    req.on('error', reject);
    req.end(Buffer.from(body));
  });
}

describe('adversarial: all HTTP writers shared one client id budget', () => {
  it('issue-11 rev3 attack 7 (http shared source): a client using up its HTTP client id budget does not stop another client POSTing under a fresh id; its own address stays refused', async () => {
    await using relay = await startAttackedRelay(['--max-clients-per-identity', String(BUDGET)]);
    const url = `${relay.httpUrl}/v1/docs/shared/update`;
    const attack = await postFrom('127.0.0.1', url, manyClients(70_000_000, BUDGET));
    console.log(`mallory's POST of ${BUDGET} new ids from 127.0.0.1: ${attack.status}`);
    expect(attack.status).toBe(200);
    const more = await postFrom('127.0.0.1', url, manyClients(71_000_000, 1));
    console.log(`mallory's next POST of 1 new id from 127.0.0.1: ${more.status} ${more.text}`);
    expect(more.status).toBe(429);

    // Another client (another address), one fresh client id.
    const service = new Y.Doc();
    service.getText('t').insert(0, 'from a backend service');
    const honest = await postFrom('127.0.0.2', url, Y.encodeStateAsUpdate(service));
    console.log(`an honest POST under one fresh id from 127.0.0.2 afterwards: ${honest.status} ${honest.text}`);
    expect(honest.status).toBe(200);

    const stored = await fetch(`${relay.httpUrl}/v1/docs/shared`).then((r) => r.json() as Promise<{ t: string; junk: Record<string, number> }>);
    expect(stored.t).toBe('from a backend service');
    expect(Object.keys(stored.junk)).toHaveLength(BUDGET);
  });
});
