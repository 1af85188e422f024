/**
 * `@capsync/client/conformance`: the `StorageAdapter` / `ReplicaStore` conformance suite, run
 * by the memory and IndexedDB adapters and meant for your own. Same case shape as
 * `@capsync/core/conformance`.
 */
export * from './storage/storage-conformance.js';
