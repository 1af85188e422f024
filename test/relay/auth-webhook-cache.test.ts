/**
 * Regression (issue 14 review): the `--auth-webhook` answer cache forgot the oldest answer first
 * (FIFO), so a token and document asked all the time was asked again as soon as enough others
 * came by, and it served an answer past its own `expiresAt` (refusing the document until the
 * cache time ran out). Now: least recently used first, never past `expiresAt`, at most
 * `maxCached` (10,000 by default). Against a real local HTTP endpoint.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it, vi } from 'vitest';
import { authWebhook } from '../../packages/server/src/auth/auth-webhook.js';
import type { AuthorizeAnswer } from '../../packages/server/src/auth/callback-access.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

/** A webhook endpoint answering `answer(docName)`; `asked` lists the documents it was asked about. */
async function endpoint(answer: (docName: string) => AuthorizeAnswer): Promise<{ url: string; asked: string[] }> {
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const { docName } = JSON.parse(body) as { docName: string };
      asked.push(docName);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(answer(docName)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => (server.closeAllConnections(), server.close(r))));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/authorize`, asked };
}

it('forgets the least recently used answer first, not the oldest', async () => {
  const { url, asked } = await endpoint(() => ({ permission: 'write' }));
  const authorize = authWebhook(url, { cacheMs: 60_000, timeoutMs: 5_000, maxCached: 2 });
  const ask = (docName: string) => Promise.resolve(authorize({ token: 't', docName, signal: new AbortController().signal }));
  await ask('hot');
  await ask('b');
  await ask('hot'); // kept: and now the most recently used
  await ask('c'); // one too many: 'b' goes, not 'hot'
  expect(asked).toEqual(['hot', 'b', 'c']);
  await ask('hot');
  expect(asked).toEqual(['hot', 'b', 'c']);
  await ask('b');
  expect(asked).toEqual(['hot', 'b', 'c', 'b']);
});

it("keeps an answer no longer than its own expiresAt", async () => {
  let expiresAt = Date.now() + 100;
  const { url, asked } = await endpoint(() => ({ permission: 'read', expiresAt }));
  const authorize = authWebhook(url, { cacheMs: 60_000, timeoutMs: 5_000 });
  const ask = () => Promise.resolve(authorize({ token: 't', docName: 'd', signal: new AbortController().signal }));
  const first = await ask();
  expect(first.expiresAt).toBe(expiresAt);
  const ended = first.expiresAt!;
  expiresAt = Date.now() + 60_000;
  // Until the permission ends: asked again after it, not served the ended answer for a minute.
  // The clock is moved past its end (only Date is faked: the HTTP exchange runs for real).
  vi.useFakeTimers({ toFake: ['Date'] });
  try {
    vi.setSystemTime(ended + 1);
    expect((await ask()).expiresAt).toBe(expiresAt);
  } finally {
    vi.useRealTimers();
  }
  expect(asked).toEqual(['d', 'd']);
});
