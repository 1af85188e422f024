/**
 * Server under test: the capsync relay (`createRelay`), as a child process of the bench.
 * Usage: capsync.ts sqlite <dataDir> | capsync.ts memory | capsync.ts postgres <url>
 * (relays started with the same PostgreSQL URL are one cluster). BENCH_PREVIEWS=1: cluster
 * previews on (`clusterPreviews`, off by default as in the relay).
 */
import { createRelay } from '@capsync/server';
import { serveControl } from '../control.js';

const [storage, where] = process.argv.slice(2);
if (storage !== 'sqlite' && storage !== 'memory' && storage !== 'postgres') {
  throw new Error(`usage: capsync.ts sqlite <dataDir> | memory | postgres <url> (got ${storage})`);
}
if (storage !== 'memory' && !where) throw new Error(`capsync.ts ${storage} needs a ${storage === 'sqlite' ? 'data directory' : 'database URL'}`);

const relay = await createRelay({
  port: 0,
  host: '127.0.0.1',
  ...(storage === 'postgres' ? { postgres: where! } : { storage, ...(where ? { dataDir: where } : {}) }),
  // The cluster bench asks for warnings, so problems of cluster mode show during a run.
  logLevel: process.env['BENCH_RELAY_LOG_LEVEL'] ?? 'silent',
  // The bench opens thousands of idle connections from loopback, past the per-address default.
  maxConnectionsPerAddress: 0,
  clusterPreviews: process.env['BENCH_PREVIEWS'] === '1',
});
serveControl({ port: relay.port, close: () => relay.close() });
