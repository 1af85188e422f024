/**
 * Server under test: the capsync relay (`createRelay`), as a child process of the bench.
 * Usage: capsync.ts sqlite <dataDir> | capsync.ts memory
 */
import { createRelay } from '@capsync/server';
import { serveControl } from '../control.js';

const [storage, dataDir] = process.argv.slice(2);
if (storage !== 'sqlite' && storage !== 'memory') throw new Error(`usage: capsync.ts sqlite <dataDir> | memory (got ${storage})`);
if (storage === 'sqlite' && !dataDir) throw new Error('capsync.ts sqlite needs a data directory');

const relay = await createRelay({
  port: 0,
  host: '127.0.0.1',
  storage,
  ...(dataDir ? { dataDir } : {}),
  logLevel: 'silent',
  // The bench opens thousands of idle connections from loopback, past the per-address default.
  maxConnectionsPerAddress: 0,
});
serveControl({ port: relay.port, close: () => relay.close() });
