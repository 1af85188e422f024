/**
 * @capsync/client instances for Node integration tests, against a real relay.
 *
 * A `TestDevice` stands for one browser profile: it owns the storage that outlives client
 * instances (a `MemoryStorage` object, or an isolated fake-indexeddb `IDBFactory`), so opening
 * a document again on the same device sees what earlier instances saved. Each `open()` makes a
 * new client instance (its own `createClient`) with test-friendly settings: `ws` as WebSocket,
 * no cross-tab channel, fast reconnects.
 *
 * `session.crash()` simulates the tab or process dying without `close()`: storage writes not yet
 * committed never will be (as when a browser is killed), the socket is dropped without a close
 * handshake, and the instance does nothing more. Reopen the document on the same device to
 * recover what was saved. (Meant for 'indexeddb' devices: a 'memory' device keeps what the dead
 * instance committed, which a real reload would not.)
 */
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import WebSocket from 'ws';
import {
  createClient,
  IndexedDbStorage,
  MemoryStorage,
  type CapsyncClient,
  type ClientOptions,
  type DocHandle,
  type DocHandleEvents,
  type ReplicaStore,
  type StorageAdapter,
  type SyncStatus,
} from '@capsync/client';
import { withTimeout } from './wait.js';

export type StorageKind = 'memory' | 'indexeddb';

/** Client settings for tests: quick reconnects so restarts heal fast; override per device or open. */
export const TEST_CLIENT_DEFAULTS = {
  crossTab: false,
  heartbeatIntervalMs: 2_000,
  heartbeatTimeoutMs: 2_000,
  reconnect: { baseMs: 10, maxMs: 100 },
} satisfies Partial<ClientOptions>;

export interface TestSession {
  client: CapsyncClient;
  handle: DocHandle;
  /** Dies without close(): see the file comment. The instance must not be used afterwards. */
  crash(): void;
  /** Graceful: closes the client (saves what is queued, keeps the stored outbox). */
  close(): Promise<void>;
}

export class TestDevice {
  private readonly memory = new MemoryStorage();
  private readonly factory = new IDBFactory() as unknown as globalThis.IDBFactory;

  constructor(
    readonly url: string,
    readonly kind: StorageKind,
    readonly label: string,
    private readonly options: Partial<ClientOptions> = {},
  ) {}

  /** Opens `docName` in a new client instance that uses this device's storage. */
  async open(docName: string, options: Partial<ClientOptions> = {}): Promise<TestSession> {
    const inner: StorageAdapter = this.kind === 'memory' ? this.memory : new IndexedDbStorage({ factory: this.factory });
    const storage = new CrashableStorage(inner);
    const sockets = new Set<WebSocket>();
    class TrackedWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        sockets.add(this);
        this.once('close', () => sockets.delete(this));
      }
    }
    const client = createClient({
      url: this.url,
      WebSocket: TrackedWebSocket as never,
      ...TEST_CLIENT_DEFAULTS,
      ...this.options,
      ...options,
      storage,
    });
    const handle = await client.open(docName);
    let crashed = false;
    return {
      client,
      handle,
      crash() {
        if (crashed) return;
        crashed = true;
        storage.freeze();
        for (const s of sockets) s.terminate();
        // Only stops this dead instance's reconnect timer; its socket is already gone.
        handle.disconnect();
        handle.awareness.destroy();
      },
      close: () => client.close(),
    };
  }
}

/**
 * A StorageAdapter wrapper that can be frozen: afterwards writes and compactions never settle
 * and never reach the inner storage (their data is lost, as in a crash), and the inner stores
 * are closed. Writes already handed to the inner storage finish normally (a crash after commit).
 */
export class CrashableStorage implements StorageAdapter {
  private frozen = false;
  private readonly stores = new Set<ReplicaStore>();

  constructor(private readonly inner: StorageAdapter) {}

  get kind(): string {
    return this.inner.kind;
  }
  get persistent(): boolean {
    return this.inner.persistent;
  }

  freeze(): void {
    this.frozen = true;
    for (const store of this.stores) store.close();
    this.stores.clear();
  }

  async open(docName: string): Promise<ReplicaStore> {
    const store = await this.inner.open(docName);
    this.stores.add(store);
    const never = <T>() => new Promise<T>(() => {});
    return {
      load: () => store.load(),
      write: (batch) => (this.frozen ? never() : store.write(batch)),
      compact: (merge) => (this.frozen ? never() : store.compact(merge)),
      size: () => store.size(),
      close: () => {
        this.stores.delete(store);
        if (!this.frozen) store.close();
      },
    };
  }

  clear(docName?: string): Promise<void> {
    return this.inner.clear(docName);
  }
}

/** Resolves once `handle.status` is `status`, watching its 'status' events. */
export function whenStatus(handle: DocHandle, status: SyncStatus, timeoutMs = 10_000): Promise<void> {
  if (handle.status === status) return Promise.resolve();
  let listener!: (s: SyncStatus) => void;
  const reached = new Promise<void>((resolve) => {
    listener = (s) => {
      if (s === status) resolve();
    };
    handle.on('status', listener);
  });
  return withTimeout(reached, timeoutMs, `"${handle.name}" to be ${status} (is ${handle.status}, pending ${handle.pending})`).finally(() =>
    handle.off('status', listener),
  );
}

/** One turn of the event loop (I/O included), so network messages interleave with a test's steps. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Resolves once `check()` holds, re-checking on each `event` of the handle (no polling).
 * Rejects after `timeoutMs` naming `what` and the handle's status and pending count.
 */
export function until(handle: DocHandle, event: keyof DocHandleEvents, check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onEvent = () => {
      if (!check()) return;
      done();
      resolve();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (status ${handle.status}, pending ${handle.pending})`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      handle.off(event, onEvent);
    };
    handle.on(event, onEvent);
  });
}
