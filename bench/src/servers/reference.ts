/**
 * Server under test: the reference y-websocket server (@y/websocket-server), wired the way its
 * own server.js does it: an http server whose upgrades go to `setupWSConnection`. In memory,
 * no persistence (YPERSISTENCE is not set).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { setupWSConnection } from '@y/websocket-server/utils';
import { serveControl } from '../control.js';

if (process.env['YPERSISTENCE']) throw new Error('the reference runs in memory: unset YPERSISTENCE');

const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('okay');
});
const wss = new WebSocketServer({ noServer: true });
wss.on('connection', setupWSConnection);
server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

serveControl({
  port: (server.address() as AddressInfo).port,
  close: async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  },
});
