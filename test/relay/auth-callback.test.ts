/**
 * Access decided by the app (issue 14): `authorize({ token, docName })` in createRelay, and the
 * CLI's `--auth-webhook` (a real local HTTP endpoint here). On a multiplexed socket each session
 * waits for its own answer while the others are served; a refusal closes that session alone.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { AuthorizeCallback } from '../../packages/server/src/auth/callback-access.js';
import { MuxClient } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { metricValue } from '../support/relay-observe.js';
import { signToken } from '../support/tokens.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function relay(options: Parameters<typeof startRelay>[0]): Promise<TestRelay> {
  const r = await startRelay(options);
  cleanups.push(() => r.dispose());
  return r;
}

it('asks the callback per document: write, read, none; a slow answer holds only its own session, and its early input waits', async () => {
  let release!: () => void;
  const slow = new Promise<void>((r) => (release = r));
  const asked: string[] = [];
  const authorize: AuthorizeCallback = async ({ token, docName }) => {
    asked.push(`${token} ${docName}`);
    if (token !== 'alice-session') return { permission: 'none' };
    if (docName === 'slow') await slow;
    if (docName.startsWith('notes/') || docName === 'slow') return { permission: 'write', identity: 'alice' };
    if (docName === 'handbook') return { permission: 'read', identity: 'alice' };
    return { permission: 'none' };
  };
  const r = await relay({ authorize });
  const mux = await MuxClient.connect(`${r.url}`, { token: 'alice-session' });
  cleanups.push(() => mux.close());

  // Opened first, answered last: its hello and sync step 1 wait in the session meanwhile.
  const late = mux.open('slow');
  const notes = await mux.synced('notes/a');
  await notes.waitForAck(notes.type('written'));
  expect(await notes.waitOpened()).toBe('write');
  const handbook = await mux.synced('handbook');
  expect(await handbook.waitOpened()).toBe('read');
  handbook.type('nope');
  await handbook.waitFor(() => handbook.errors.find((e) => e.code === 'read-only'), 'the read-only error');
  const secret = mux.open('secret');
  expect((await secret.waitClosed()).code).toBe(4403);

  release();
  expect(await late.waitOpened()).toBe('write');
  await late.waitSynced();
  await late.waitForAck(late.type('finally'));
  expect(asked).toEqual(expect.arrayContaining(['alice-session slow', 'alice-session notes/a', 'alice-session handbook', 'alice-session secret']));

  // A plain connection is asked the same; a stranger's token gets nothing.
  const plain = await ProtocolClient.synced(`${r.docUrl('notes/b')}?token=alice-session`);
  cleanups.push(() => plain.close());
  const stranger = await ProtocolClient.connect(`${r.docUrl('notes/b')}?token=mallory`);
  cleanups.push(() => stranger.close());
  expect((await stranger.waitClosed()).code).toBe(4403);
});

it('refuses a document for now (1013) when the callback throws or times out, and keeps relay trust with the shared secret', async () => {
  const secret = 'callback-mesh-secret-0123456789';
  const r = await relay({
    authSecret: secret,
    authorizeTimeoutMs: 100,
    authorize: ({ docName }) => (docName === 'hang' ? new Promise(() => {}) : docName === 'throw' ? Promise.reject(new Error('db down')) : { permission: 'write' }),
  });
  for (const doc of ['hang', 'throw']) {
    const c = await ProtocolClient.connect(`${r.docUrl(doc)}?token=t`);
    cleanups.push(() => c.close());
    const closed = await c.waitClosed();
    expect(closed.code).toBe(1013);
    expect(closed.reason).toMatch(/^unavailable: /);
  }
  // A relay credential signed with the mesh's secret is the relay's to check: listing documents works.
  const relayToken = await signToken(secret, { sub: 'relay:x', exp: Math.floor(Date.now() / 1000) + 300, docs: { '*': 'write' }, capsync_relay: true });
  expect((await fetch(`${r.httpUrl}/v1/docs`, { headers: { authorization: `Bearer ${relayToken}` } })).status).toBe(200);
  // The callback can never make a client a relay.
  expect((await fetch(`${r.httpUrl}/v1/docs`, { headers: { authorization: 'Bearer t' } })).status).toBe(403);
});

it('--auth-webhook: POSTs the token and document, keeps answers for the cache time, 403 means none', async () => {
  const requests: { token: string; docName: string }[] = [];
  const app = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const asked = JSON.parse(body) as { token: string; docName: string };
      requests.push(asked);
      if (asked.docName === 'private') {
        res.writeHead(403);
        res.end();
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ permission: 'write', identity: `user-${asked.token}` }));
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => (app.closeAllConnections(), app.close(r))));
  const r = await relay({ authWebhook: `http://127.0.0.1:${(app.address() as AddressInfo).port}/authorize`, authWebhookCacheMs: 60_000 });
  for (let i = 0; i < 3; i++) {
    const c = await ProtocolClient.synced(`${r.docUrl('shared')}?token=bob`);
    cleanups.push(() => c.close());
    await c.waitForAck(c.type(`${i}`));
  }
  expect(requests).toEqual([{ token: 'bob', docName: 'shared' }]); // asked once, then kept
  const refused = await ProtocolClient.connect(`${r.docUrl('private')}?token=bob`);
  cleanups.push(() => refused.close());
  expect((await refused.waitClosed()).code).toBe(4403);
});

it('bounds the callback calls a socket can start: opening and closing sessions at once does not pile them up', async () => {
  let inFlight = 0;
  let most = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const r = await relay({
    maxSessionsPerSocket: 10,
    authorize: async () => {
      most = Math.max(most, ++inFlight);
      await gate;
      inFlight--;
      return { permission: 'write' };
    },
  });
  const mux = await MuxClient.connect(r.url, { token: 'mallory' });
  cleanups.push(() => mux.close());
  await mux.waitHello();
  for (let i = 0; i < 200; i++) {
    const s = mux.open(`doc-${i}`, { sync: false });
    void s.close();
  }
  // Answered in order on the control session: every open before it has been decided. (Past
  // max-refused-opens-per-socket refusals in a row the relay closes the socket instead.)
  mux.sendControl({ type: 'ping', id: 7 });
  await mux.waitFor(() => mux.control.some((m) => m.type === 'pong') || !mux.isOpen, 'the pong, or the socket closed');
  release();
  expect(most).toBeLessThanOrEqual(10);
  expect(await metricValue(r.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-sessions-per-socket' })).toBeGreaterThan(0);
});

