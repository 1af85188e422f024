/**
 * Worker thread that owns the SQLite database for `SqliteWorkerStore`, so commits (and their
 * fsyncs) never block the relay's event loop. It runs a `SqliteDocStore`, which group-commits
 * the appends of each of this thread's event-loop turns.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteDocStore, type SqliteDocStoreOptions } from './sqlite-store.js';
import type { WorkerReply, WorkerRequest } from './sqlite-worker-protocol.js';

const { file, options } = workerData as { file: string; options: SqliteDocStoreOptions };
const port = parentPort!;

let store: SqliteDocStore;
try {
  store = new SqliteDocStore(file, options);
  port.postMessage({ ready: true });
} catch (err) {
  port.postMessage({ ready: false, message: (err as Error).message });
  process.exit(0);
}

port.on('message', (req: WorkerRequest) => {
  const reply = (r: WorkerReply) => port.postMessage(r);
  let result: Promise<unknown>;
  switch (req.op) {
    case 'load':
      result = store.load(req.name);
      break;
    case 'append':
      result = store.append(req.name, req.update, req.incarnation);
      break;
    case 'compact':
      result = store.compact(req.name, req.snapshot, req.through, req.incarnation);
      break;
    case 'delete':
      result = store.delete(req.name);
      break;
    case 'claim-clients':
      result = store.claimClients(req.name, req.owner, req.clientIds);
      break;
    case 'load-client-owners':
      result = store.loadClientOwners(req.name);
      break;
    case 'ping':
      result = store.ping();
      break;
    case 'list':
      result = store.list();
      break;
    case 'lock-load':
      result = store.locks.loadLocks();
      break;
    case 'lock-grant':
      result = store.locks.grant(req.key, req.owner, req.expiresAt);
      break;
    case 'lock-renew':
      result = store.locks.renew(req.key, req.token, req.expiresAt);
      break;
    case 'lock-end':
      result = store.locks.end(req.key, req.token);
      break;
    case 'webhook-enqueue':
      result = store.webhooks.enqueue(req.deliveries);
      break;
    case 'webhook-claim':
      result = store.webhooks.claim(req.now, req.limit, req.leaseMs);
      break;
    case 'webhook-remove':
      result = store.webhooks.remove(req.deliveryId);
      break;
    case 'webhook-retry':
      result = store.webhooks.retryAt(req.deliveryId, req.attempts, req.nextAt);
      break;
    case 'webhook-rewrite':
      result = store.webhooks.rewrite(req.deliveryId, req.body, req.nextAt, req.heldUntil);
      break;
    case 'webhook-stats':
      result = store.webhooks.stats();
      break;
    case 'close':
      result = store.close();
      break;
  }
  result.then(
    (value) => reply({ id: req.id, ok: true, value }),
    (err: unknown) => reply({ id: req.id, ok: false, message: (err as Error).message, code: (err as { code?: string }).code }),
  );
});
