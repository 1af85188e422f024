/**
 * @capsync/client — the browser-first client: an offline-first replica in IndexedDB, resilient
 * sync with a capsync relay, an honest status and pending count, and cross-tab sharing.
 * Runs in Node too (memory storage, or IndexedDB through fake-indexeddb).
 */
export { createClient, type CapsyncClient, type ClientOptions } from './client.js';
export { DocHandle, type DocHandleEvents, type FlushOptions } from './doc-handle.js';
export type { Subdocs } from './sync/subdocs.js';
export type { SyncStatus } from './status.js';
export { LockClient, type AcquireOptions } from './locks/lock-client.js';
export { Lease } from './locks/lease.js';
export { FencedValues } from './locks/fenced-values.js';
export { MemoryStorage } from './storage/memory-storage.js';
export { IndexedDbStorage, type IndexedDbStorageOptions } from './storage/indexeddb-storage.js';
export type { StorageAdapter, ReplicaStore, ReplicaWrite, ReplicaSize, StoredUpdate, OutboxRecord } from './storage/storage-adapter.js';
export { isSubdocReplicaOf, subdocReplicaName } from './storage/storage-adapter.js';
export type { WebSocketConstructor, WebSocketLike } from './sync/websocket-like.js';
export type { TokenSource } from './sync/relay-link.js';
export type { BackoffOptions } from '@capsync/core';
export {
  CapsyncError,
  UnavailableError,
  AuthError,
  LocalStorageError,
  LockTimeoutError,
  LeaseLostError,
  StaleTokenError,
  ConflictError,
  NotOwnerError,
  LimitExceededError,
  DocumentDeletedError,
  isCapsyncError,
  CloseCode,
  type ErrorCode,
} from '@capsync/core';
