/**
 * The relay inside the app's own server (issue 14): attached to an express app's http.Server
 * under a path prefix, sharing its port with the app's routes and the app's own WebSocket
 * endpoint; the HTTP API mounted by the app; capsync clients (multiplexed) and a stock
 * y-websocket provider syncing through it; closing the relay leaves the app serving.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { createRelay, type RelayHandle } from '@capsync/server';
import { TestDevice, type TestSession } from '../support/client-fixture.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { withTimeout } from '../support/wait.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An express app with a route and a WebSocket echo endpoint of its own, listening on port 0. */
async function appServer(): Promise<{ app: express.Express; server: http.Server; base: string }> {
  const app = express();
  app.get('/hello', (_req, res) => res.send('from the app'));
  const server = http.createServer(app);
  const echo = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/echo') echo.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(m)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => (server.closeAllConnections(), server.close(r))));
  return { app, server, base: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function echoes(base: string): Promise<string> {
  const ws = new WebSocket(`ws://${base}/echo`);
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  const reply = new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
  ws.send('ping');
  const got = await withTimeout(reply, 5_000, 'the echo');
  ws.close();
  return got;
}

function text(session: TestSession): string {
  return session.handle.doc.getText('t').toString();
}

it("shares an express app's port under a path prefix: the app's routes and WebSockets, the relay's API, capsync clients and a y-websocket provider", async () => {
  const { app, server, base } = await appServer();
  const relay: RelayHandle = await createRelay({ server, path: '/collab', storage: 'memory' });
  cleanups.push(() => relay.close());
  app.use('/collab', relay.http);
  expect(relay.url).toBe(`ws://${base}/collab`);

  expect(await (await fetch(`http://${base}/hello`)).text()).toBe('from the app');
  expect(await (await fetch(`http://${base}/collab/healthz`)).json()).toMatchObject({ status: 'ok' });
  expect((await fetch(`http://${base}/healthz`)).status).toBe(404); // the app's, not the relay's
  expect(await echoes(base)).toBe('ping');

  // Two capsync clients (one multiplexed socket each) converge through it.
  const a = await new TestDevice(relay.url, 'memory', 'a').open('notes');
  const b = await new TestDevice(relay.url, 'memory', 'b').open('notes');
  a.handle.doc.getText('t').insert(0, 'typed on a');
  await withTimeout(
    new Promise<void>((r) => {
      const check = () => text(b) === 'typed on a' && r();
      b.handle.doc.on('update', check);
      check();
    }),
    10_000,
    "a's edit on b",
  );
  await a.handle.flush();

  // A stock y-websocket provider, at the prefixed URL.
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(relay.url, 'notes', doc, { WebSocketPolyfill: WebSocket as never, disableBc: true });
  await withTimeout(new Promise<void>((r) => provider.once('sync', (s: boolean) => s && r())), 10_000, 'provider sync');
  expect(doc.getText('t').toString()).toBe('typed on a');
  // The relay's document API, behind the app's mount.
  expect(await (await fetch(`http://${base}/collab/v1/docs/notes`)).json()).toMatchObject({ t: 'typed on a' });

  provider.destroy();
  await Promise.all([a.close(), b.close()]);
  await relay.close();
  expect(await (await fetch(`http://${base}/hello`)).text()).toBe('from the app');
  expect(await echoes(base)).toBe('ping');
});

it('serves under a path prefix on its own port too, and only there', async () => {
  const relay = await createRelay({ port: 0, host: '127.0.0.1', path: '/sync/v2', storage: 'memory' });
  cleanups.push(() => relay.close());
  expect(relay.url).toMatch(/\/sync\/v2$/);
  const client = await ProtocolClient.synced(`${relay.url}/doc`);
  cleanups.push(() => client.close());
  await client.waitForAck(client.type('hello'));
  // Outside the prefix on the relay's own server: 404, for upgrades and requests alike.
  const outside = new WebSocket(`ws://127.0.0.1:${relay.port}/doc`);
  outside.on('error', () => {}); // the failed handshake, expected
  const status = await withTimeout(new Promise<number>((r) => outside.once('unexpected-response', (_req, res) => r(res.statusCode ?? 0))), 5_000, 'the refusal');
  expect(status).toBe(404);
  expect((await fetch(`http://127.0.0.1:${relay.port}/healthz`)).status).toBe(404);
  expect((await fetch(`http://127.0.0.1:${relay.port}/sync/v2/healthz`)).status).toBe(200);
  await expect(createRelay({ path: 'no-slash' })).rejects.toThrow(/path/);
});

it("leaves the request as it came for the app's own upgrade listeners (a document named like an app endpoint stays the relay's), and needs a path", async () => {
  const server = http.createServer((_req, res) => res.end('app'));
  const relay = await createRelay({ server, path: '/collab', storage: 'memory' });
  cleanups.push(() => relay.close());
  // The app's endpoint at /ws, added after the relay (the ws README's noServer pattern).
  const seenByApp: string[] = [];
  const appWss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    seenByApp.push(req.url!);
    if (req.url === '/ws') appWss.handleUpgrade(req, socket, head, (ws) => ws.send('from the app'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => (server.closeAllConnections(), server.close(r))));
  const client = await ProtocolClient.synced(`${relay.url}/ws`);
  cleanups.push(() => client.close());
  await client.waitForAck(client.type('in the relay document "ws"'));
  expect(seenByApp).toEqual(['/collab/ws']);
  await expect(createRelay({ server, storage: 'memory' })).rejects.toThrow(/path/);
});

