/**
 * Memory per idle connection: the server's RSS and heapUsed (after a forced GC) before and
 * after `connections` WebSocket clients joined one document and finished the handshake.
 * A few warm-up connections to the same document stay open throughout, so the baseline
 * already holds the loaded document and the compiled connection path: the difference is
 * what the idle connections themselves cost.
 */
import type { WebSocket } from 'ws';
import { closeAll, connectMany } from './load-client.js';
import type { ServerKind, ServerProcess } from './server-process.js';

const HANDSHAKE_CONCURRENCY = 100;
export const WARM_UP_CONNECTIONS = 20;

export interface IdleMemoryResult {
  server: ServerKind;
  connections: number;
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  rssPerConnection: number;
  heapPerConnection: number;
}

export async function measureIdleMemory(server: ServerProcess, docName: string, connections: number): Promise<IdleMemoryResult> {
  const warmUp = await connectMany(() => server.docUrl(docName), WARM_UP_CONNECTIONS, HANDSHAKE_CONCURRENCY);
  let sockets: WebSocket[] = [];
  try {
    const before = await server.memory();
    sockets = await connectMany(() => server.docUrl(docName), connections, HANDSHAKE_CONCURRENCY);
    const after = await server.memory();
    return {
      server: server.kind,
      connections,
      before,
      after,
      rssPerConnection: (after.rss - before.rss) / connections,
      heapPerConnection: (after.heapUsed - before.heapUsed) / connections,
    };
  } finally {
    await closeAll([...sockets, ...warmUp]);
  }
}
