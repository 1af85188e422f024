/**
 * `@capsync/server/conformance`: the conformance suites of the server's interfaces with more
 * than one implementation (LockBackend: embedded, forwarded, etcd; LockStore: memory, SQLite; WebhookQueue: memory,
 * SQLite, PostgreSQL).
 * Same case shape as `@capsync/core/conformance`, which has the DocStore suite.
 */
export * from './locks/lock-store-conformance.js';
export * from './locks/lock-backend-conformance.js';
export * from './webhooks/webhook-queue-conformance.js';
