/**
 * Server under test: Hocuspocus 4 (`@hocuspocus/server`, its own http + WebSocket wiring) with
 * the Redis extension (`@hocuspocus/extension-redis`), so instances started on one Redis are
 * one cluster. In memory, no database extension: documents live only in the instances.
 * Usage: hocuspocus.ts <redisPort>
 */
import { Server } from '@hocuspocus/server';
import { Redis } from '@hocuspocus/extension-redis';
import { serveControl } from '../control.js';

const redisPort = Number(process.argv[2]);
if (!Number.isInteger(redisPort) || redisPort <= 0) throw new Error(`usage: hocuspocus.ts <redisPort> (got ${process.argv[2]})`);

const server = new Server({
  port: 0,
  address: '127.0.0.1',
  quiet: true,
  stopOnSignals: false,
  extensions: [new Redis({ host: '127.0.0.1', port: redisPort })],
});
await server.listen();
serveControl({ port: server.address.port, close: () => server.destroy() });
