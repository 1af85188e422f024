/**
 * A lock client in a process of its own, driven over IPC by `LockWorker` (lock-worker.ts), so
 * tests can freeze it with SIGSTOP like a real paused process. argv: relay URL, lock timeout.
 *
 * Requests: { id, cmd: 'acquire', key, ttlMs, waitMs } | { id, cmd: 'release', token, key }
 *   | { id, cmd: 'renew', key, token } | { id, cmd: 'cp-set', doc, key, value, token }
 *   | { id, cmd: 'cp-get', doc, key }
 * Replies: { id, ok: true, token?, value? } | { id, ok: false, code, message }; code
 * 'local-lease-lost' when the worker refused by itself because its lease was already gone.
 * Events: { event: 'lost', key, token } when a lease's signal aborts (not on release).
 */
import WebSocket from 'ws';
import { CapsyncError, UnavailableError, createClient, isCapsyncError, type DocHandle, type Lease, type WebSocketConstructor } from '@capsync/client';
import { randomBytes } from 'node:crypto';
import { OWNER_KEY_PREFIX, decodeMessage, encodeMessage, errorFromCode } from '@capsync/core';

const [url, lockTimeout] = process.argv.slice(2);
/** This worker's lock owner key: its raw connection (cp-set-raw) writes under the client's leases. */
const ownerKey = randomBytes(16).toString('base64url');
const client = createClient({
  ownerKey,
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
  | { id: number; cmd: 'cp-set-raw'; doc: string; key: string; value: unknown; token: number }
  | { id: number; cmd: 'cp-get'; doc: string; key: string };

process.on('message', (req: Request) => {
  void run(req).then(
    (result) => process.send!({ id: req.id, ok: true, ...result }),
    (err: unknown) =>
      process.send!({
        id: req.id,
        ok: false,
        code: (err as Error).message.startsWith('local-lease-lost') ? 'local-lease-lost' : isCapsyncError(err) ? err.code : 'internal',
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
      if (!lease) throw localLoss();
      await (req.cmd === 'release' ? lease.release() : lease.renew());
      return {};
    }
    case 'cp-set': {
      const lease = leases.get(`${req.key}#${req.token}`);
      const h = await doc(req.doc);
      if (!lease || !lease.valid) throw localLoss();
      await h.cp.set(req.key, req.value, lease);
      return {};
    }
    case 'cp-set-raw':
      // What a client does when it checked its lease, then froze with the write in hand: the
      // write goes out whatever the lease's state now. Only the relay's fence stands in the way.
      await rawCpSet(req.doc, req.key, req.value, req.token);
      return {};
    case 'cp-get': {
      const h = await doc(req.doc);
      await h.whenSynced({ timeoutMs: 5_000 });
      return { value: h.cp.entry(req.key) };
    }
  }
}

/** One bare protocol connection per document for `cp-set-raw`. */
const raw = new Map<string, Promise<WebSocket>>();
let rawId = 1;
const rawWaiters = new Map<number, (reply: { code: string; message: string }) => void>();
function rawSocket(name: string): Promise<WebSocket> {
  let p = raw.get(name);
  if (!p) {
    p = new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`${url}/${encodeURIComponent(name)}`);
      ws.binaryType = 'nodebuffer';
      ws.on('open', () => {
        ws.send(encodeMessage({ type: 'hello', protocolVersion: 1, capabilities: ['ack', 'error', OWNER_KEY_PREFIX + ownerKey] }));
        resolve(ws);
      });
      ws.on('message', (data: Buffer) => {
        const msg = decodeMessage(new Uint8Array(data));
        if (msg.type === 'cp-reply') rawWaiters.get(msg.id)?.(msg);
      });
      const drop = () => raw.delete(name);
      ws.on('close', drop);
      ws.on('error', (err) => {
        drop();
        reject(err);
      });
    });
    raw.set(name, p);
  }
  return p;
}

async function rawCpSet(doc: string, key: string, value: unknown, token: number): Promise<void> {
  const timeoutMs = Number(lockTimeout ?? 1000);
  const id = rawId++;
  const reply = new Promise<{ code: string; message: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      rawWaiters.delete(id);
      reject(new UnavailableError(`no cp-reply within ${timeoutMs} ms`));
    }, timeoutMs);
    rawWaiters.set(id, (r) => {
      clearTimeout(timer);
      rawWaiters.delete(id);
      resolve(r);
    });
  });
  // The connection may hang (a held link): the reply's deadline covers connecting too.
  const sent = rawSocket(doc).then(
    (ws) => ws.send(encodeMessage({ type: 'cp-set', id, key, token, json: JSON.stringify(value) })),
    (err: unknown) => {
      throw new UnavailableError(`cannot reach the relay: ${(err as Error).message}`);
    },
  );
  sent.catch(() => {});
  reply.catch(() => {});
  const r = await Promise.race([sent.then(() => reply), reply]).finally(() => rawWaiters.delete(id));
  if (r.code) throw errorFromCode(r.code as never, r.message);
}

/**
 * The worker's own lease is gone (its local deadline passed, or it was released) so nothing
 * was sent. A code of its own: unlike the relay's 'lease-lost', it says nothing about the
 * authority, whose deadline comes later.
 */
function localLoss(): CapsyncError {
  return new CapsyncError('internal', 'local-lease-lost: the lease is no longer held by this worker; nothing was sent');
}

process.on('disconnect', () => process.exit(0));
process.send!({ event: 'ready' });
