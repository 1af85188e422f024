/**
 * A lock client in a process of its own, driven over IPC by `LockWorker` (lock-worker.ts), so
 * tests can freeze it with SIGSTOP like a real paused process. argv: relay URL, lock timeout.
 *
 * Requests: { id, cmd: 'acquire', key, ttlMs, waitMs } | { id, cmd: 'release', token, key }
 *   | { id, cmd: 'renew', key, token } | { id, cmd: 'cp-set', doc, key, value, token }
 *   | { id, cmd: 'cp-get', doc, key }
 * Replies: { id, ok: true, token?, value? } | { id, ok: false, code, message }.
 * Events: { event: 'lost', key, token } when a lease's signal aborts (not on release).
 */
import WebSocket from 'ws';
import { LeaseLostError, createClient, isCapsyncError, type DocHandle, type Lease, type WebSocketConstructor } from '@capsync/client';

const [url, lockTimeout] = process.argv.slice(2);
const client = createClient({
  url: url!,
  storage: 'memory',
  WebSocket: WebSocket as unknown as WebSocketConstructor,
  crossTab: false,
  heartbeatIntervalMs: 500,
  heartbeatTimeoutMs: 500,
  reconnect: { baseMs: 10, maxMs: 100 },
  lockTimeoutMs: Number(lockTimeout ?? 1000),
});
const leases = new Map<string, Lease>();
const docs = new Map<string, Promise<DocHandle>>();
const doc = (name: string) => {
  let h = docs.get(name);
  if (!h) docs.set(name, (h = client.open(name)));
  return h;
};

type Request =
  | { id: number; cmd: 'acquire'; key: string; ttlMs: number; waitMs: number }
  | { id: number; cmd: 'release' | 'renew'; key: string; token: number }
  | { id: number; cmd: 'cp-set'; doc: string; key: string; value: unknown; token: number }
  | { id: number; cmd: 'cp-get'; doc: string; key: string };

process.on('message', (req: Request) => {
  void run(req).then(
    (result) => process.send!({ id: req.id, ok: true, ...result }),
    (err: unknown) =>
      process.send!({
        id: req.id,
        ok: false,
        code: isCapsyncError(err) ? err.code : 'internal',
        message: (err as Error).message,
      }),
  );
});

async function run(req: Request): Promise<{ token?: number; value?: unknown }> {
  switch (req.cmd) {
    case 'acquire': {
      const lease = await client.locks.acquire(req.key, { ttlMs: req.ttlMs, waitMs: req.waitMs });
      const id = `${req.key}#${lease.token}`;
      leases.set(id, lease);
      lease.signal.addEventListener('abort', () => {
        leases.delete(id);
        if (lease.lostBeforeRelease) process.send!({ event: 'lost', key: req.key, token: lease.token });
      });
      return { token: lease.token };
    }
    case 'release':
    case 'renew': {
      const lease = leases.get(`${req.key}#${req.token}`);
      if (!lease) throw new LeaseLostError('no such lease in this worker (lost or released)');
      await (req.cmd === 'release' ? lease.release() : lease.renew());
      return {};
    }
    case 'cp-set': {
      const lease = leases.get(`${req.key}#${req.token}`);
      const h = await doc(req.doc);
      if (!lease) throw new LeaseLostError('lease already lost locally');
      await h.cp.set(req.key, req.value, lease);
      return {};
    }
    case 'cp-get': {
      const h = await doc(req.doc);
      await h.whenSynced({ timeoutMs: 5_000 });
      return { value: h.cp.entry(req.key) };
    }
  }
}

process.on('disconnect', () => process.exit(0));
process.send!({ event: 'ready' });
