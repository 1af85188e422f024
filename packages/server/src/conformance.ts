/**
 * `@capsync/server/conformance`: the conformance suites of the server's interfaces with more
 * than one implementation (LockBackend: embedded, forwarded, etcd; LockStore: memory, SQLite).
 * Same case shape as `@capsync/core/conformance`, which has the DocStore suite.
 */
export * from './locks/lock-store-conformance.js';
export * from './locks/lock-backend-conformance.js';
