/**
 * Server under test: a plain `ws` broadcast server with no Yjs at all, the physical limit of
 * fan-out on this machine. Every binary message is forwarded as is to every other client.
 * It greets each client with constant sync-step-1 bytes so the load clients can wait for
 * "registered" exactly as they do with the Yjs servers.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { EMPTY_SYNC_STEP_1 } from '../wire.js';
import { serveWebSockets } from './serve-ws.js';

const wss = new WebSocketServer({ noServer: true });
const clients = new Set<WebSocket>();
wss.on('connection', (ws) => {
  clients.add(ws);
  ws.on('message', (data, isBinary) => {
    if (!isBinary) return;
    for (const other of clients) if (other !== ws) other.send(data, { binary: true });
  });
  ws.on('close', () => clients.delete(ws));
  ws.on('error', () => ws.terminate());
  ws.send(EMPTY_SYNC_STEP_1);
});
await serveWebSockets(wss);
