import { CapsyncError, OWNER_KEY_MAX_LENGTH, OWNER_KEY_MIN_LENGTH, validateDocName } from '@capsync/core';
import { DocHandle, type DocHandleSettings } from './doc-handle.js';
import { LockClient } from './locks/lock-client.js';
import { IndexedDbStorage } from './storage/indexeddb-storage.js';
import { MemoryStorage } from './storage/memory-storage.js';
import type { StorageAdapter } from './storage/storage-adapter.js';
import type { BackoffOptions } from '@capsync/core';
import { relayUrlList, type TokenSource } from './sync/relay-link.js';
import { RelaySockets } from './sync/relay-socket.js';
import { globalWebSocket, type WebSocketConstructor } from './sync/websocket-like.js';

export interface ClientOptions {
  /**
   * Relay URL, `ws://host:port` or `wss://…`, or a list of them (relays of one mesh, or
   * independent relays); documents live at `<url>/<name>`. With a list, each document (and
   * the lock connection) starts on the first URL, stays on the relay that works, and moves
   * to the next URL, round robin, when its relay is unreachable (connect error or timeout,
   * heartbeat death, closed, shutting down); the next connection's sync resends everything
   * that relay lacks. Backoff applies once every URL failed in a row. Throws a
   * CapsyncError ('internal') for an empty list or a URL that is not ws:// or wss://.
   */
  url: string | readonly string[];
  /**
   * Where replicas are kept. Default 'indexeddb' where IndexedDB exists, else 'memory'.
   * If IndexedDB fails (private mode, quota), documents keep working in memory and an
   * 'error' event says so.
   */
  storage?: 'indexeddb' | 'memory' | StorageAdapter;
  /** A JWT, or a function called before every (re)connect to get a fresh one. */
  token?: TokenSource;
  /** WebSocket implementation; defaults to the global one. On Node < 22 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Share edits and presence with other tabs over BroadcastChannel. Default true in browsers, false elsewhere. */
  crossTab?: boolean;
  /** Connect to the relay when a document opens. Default true; false keeps it offline until `handle.connect()`. */
  connect?: boolean;
  /** Send a heartbeat after this long without news from the relay. Default 10 s. */
  heartbeatIntervalMs?: number;
  /** Declare the link dead (status 'offline') this long after an unanswered heartbeat or connect. Default 5 s. */
  heartbeatTimeoutMs?: number;
  /** Reconnect backoff bounds. Default base 500 ms, max 15 s (full jitter). */
  reconnect?: Partial<BackoffOptions>;
  /** Local writes in a burst are committed together this long after the first. Default 50 ms. */
  localWriteDelayMs?: number;
  /** Compact the local log at this many stored rows. Default 100. */
  compactAfterRows?: number;
  /** Send another tab's unacknowledged updates after this long. Default 3 s. */
  takeoverMs?: number;
  /** Yjs garbage collection of deleted content. Default true. */
  gc?: boolean;
  /**
   * What a document handle does with its local replica when the relay says the document was
   * deleted ('document-deleted', close 4410: deleted while open, or since this replica last
   * synced). 'clear' (default): the stored replica is erased, so opening the name again starts
   * empty, in the new document. 'keep': the stored replica stays as it is (to read or copy
   * elsewhere); it is refused again on every connect. Either way the handle reports a
   * DocumentDeletedError, stops syncing (no reconnect loop) and its `doc` keeps what it held.
   */
  onDeleted?: 'clear' | 'keep';
  /**
   * Deadline for a lock operation or fenced write to reach the relay and its lock authority
   * before it rejects with UnavailableError (an acquire gets its `waitMs` on top). Default 2 s.
   */
  lockTimeoutMs?: number;
  /**
   * The secret that makes this client's leases its own on a relay without a token `sub` (an
   * open relay): announced on its lock and document connections, so only this client may
   * renew, release or write under its leases. At least 22 base64url characters (128 bits).
   * Default: a fresh random key per createClient(). Pass your own to share leases between
   * clients you control (tabs, a reloaded page); keep it as secret as a token.
   */
  ownerKey?: string;
  /**
   * Every document over one WebSocket to the relay (`/.capsync/mux`), each a session of its
   * own, instead of one WebSocket per document. Default true. A relay without that endpoint
   * (older versions) refuses it with 4404; the client remembers that per URL and, when no
   * URL has it, uses a WebSocket per document. false: always a WebSocket per document.
   */
  multiplex?: boolean;
}

/** The client: opens documents and manages their local replicas. */
export interface CapsyncClient {
  /**
   * Opens a document; resolves once the local replica is loaded (no network needed).
   * Opening a name that is already open returns the same handle; each open needs a close.
   */
  open(name: string): Promise<DocHandle>;
  /** Deletes the local replica of `name` and of its subdocuments (or of all documents), closing open handles of it first. Pending local updates are lost. */
  clearLocalData(name?: string): Promise<void>;
  /**
   * Locks with fencing tokens from the relay's lock authority (the CP side). The lock
   * connection opens on first use.
   */
  readonly locks: LockClient;
  /** Closes every open document and the lock connection. */
  close(): Promise<void>;
}

export function createClient(options: ClientOptions): CapsyncClient {
  const urls = relayUrlList(options.url);
  const WebSocket = options.WebSocket ?? globalWebSocket();
  if (!WebSocket) {
    throw new CapsyncError('internal', 'no WebSocket implementation: on Node < 22 pass createClient({ WebSocket }) from the ws package');
  }
  const storage = resolveStorage(options.storage);
  const inBrowser = typeof (globalThis as { window?: unknown }).window !== 'undefined';
  const sessionId = randomId();
  const link: DocHandleSettings['link'] = {
      urls,
      WebSocket,
      token: options.token,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 10_000,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 5_000,
      backoff: { baseMs: options.reconnect?.baseMs ?? 500, maxMs: options.reconnect?.maxMs ?? 15_000 },
      // One per client, on its lock and document links: its leases (and fenced writes under
      // them) are this client's on a relay without a token `sub` (see README, Locks).
      ownerKey: checkedOwnerKey(options.ownerKey) ?? randomOwnerKey(),
  };
  const sockets = options.multiplex === false ? null : new RelaySockets(link);
  const settings: Omit<DocHandleSettings, 'sessionId'> = {
    storage,
    link,
    sockets,
    crossTab: options.crossTab ?? inBrowser,
    connect: options.connect ?? true,
    localWriteDelayMs: options.localWriteDelayMs ?? 50,
    compactAfterRows: options.compactAfterRows ?? 100,
    takeoverMs: options.takeoverMs ?? 3_000,
    gc: options.gc ?? true,
    onDeleted: options.onDeleted ?? 'clear',
    cpTimeoutMs: options.lockTimeoutMs ?? 2_000,
  };
  // The lock client is a session of the same socket as the documents (unless multiplex: false).
  const locks = new LockClient({ link: settings.link, sockets, timeoutMs: options.lockTimeoutMs ?? 2_000 });

  const open = new Map<string, { handle: Promise<DocHandle>; refs: number }>();
  let handleCount = 0;
  let closed = false;

  async function openDoc(name: string): Promise<DocHandle> {
    if (closed) throw new CapsyncError('internal', 'client is closed');
    validateDocName(name);
    const existing = open.get(name);
    if (existing) {
      existing.refs++;
      return existing.handle;
    }
    // The close of the last reference really closes (closeName forgets the entry first).
    const release = (): boolean => {
      const current = open.get(name);
      if (current === entry && --entry.refs > 0) return false;
      if (current === entry) open.delete(name);
      return true;
    };
    // Object.assign, not a spread with more keys: ~3 µs per document in V8 (see core newDoc).
    const own: Pick<DocHandleSettings, 'sessionId' | 'release'> = { sessionId: `${sessionId}.${handleCount++}`, release };
    const entry = { refs: 1, handle: DocHandle.open(name, Object.assign({}, settings, own)) };
    open.set(name, entry);
    entry.handle.catch(() => open.delete(name));
    return entry.handle;
  }

  async function closeName(name: string): Promise<void> {
    const entry = open.get(name);
    if (!entry) return;
    open.delete(name);
    const handle = await entry.handle.catch(() => null);
    entry.refs = 0;
    await handle?.close();
  }

  return {
    open: openDoc,
    locks,
    async clearLocalData(name?: string) {
      if (name !== undefined) await closeName(name);
      else await Promise.all(Array.from(open.keys(), closeName));
      await storage.clear(name);
    },
    async close() {
      closed = true;
      locks.close();
      await Promise.all(Array.from(open.keys(), closeName));
      sockets?.close();
    },
  };
}

function resolveStorage(storage: ClientOptions['storage']): StorageAdapter {
  if (storage && typeof storage === 'object') return storage;
  const hasIndexedDb = typeof (globalThis as { indexedDB?: unknown }).indexedDB !== 'undefined';
  if (storage === 'memory' || (storage === undefined && !hasIndexedDb)) return new MemoryStorage();
  return new IndexedDbStorage();
}

/**
 * A fresh lock owner key: 128 random bits, base64url (22 characters). A secret: whoever knows
 * it may renew and release this client's leases on a relay without auth.
 */
function randomOwnerKey(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function checkedOwnerKey(key: string | undefined): string | undefined {
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || key.length < OWNER_KEY_MIN_LENGTH || key.length > OWNER_KEY_MAX_LENGTH || !/^[A-Za-z0-9_-]+$/.test(key)) {
    throw new CapsyncError('internal', `ownerKey must be ${OWNER_KEY_MIN_LENGTH} to ${OWNER_KEY_MAX_LENGTH} base64url characters`);
  }
  return key;
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID ? c.randomUUID().slice(0, 8) : Math.random().toString(36).slice(2, 10);
}
