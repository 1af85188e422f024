/**
 * Server under test: the reference y-websocket server (@y/websocket-server), wired the way its
 * own server.js does it: an http server whose upgrades go to `setupWSConnection`. In memory,
 * no persistence (YPERSISTENCE is not set).
 */
import { WebSocketServer } from 'ws';
import { setupWSConnection } from '@y/websocket-server/utils';
import { serveWebSockets } from './serve-ws.js';

if (process.env['YPERSISTENCE']) throw new Error('the reference runs in memory: unset YPERSISTENCE');

const wss = new WebSocketServer({ noServer: true });
wss.on('connection', setupWSConnection);
await serveWebSockets(wss);
