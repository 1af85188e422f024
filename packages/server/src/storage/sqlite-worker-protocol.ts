import type { NewWebhookDelivery } from '../webhooks/webhook-queue.js';

/** Messages between `SqliteWorkerStore` and its worker thread (`sqlite-worker.ts`). */
export type WorkerRequest = { id: number } & (
  | { op: 'load'; name: string }
  | { op: 'append'; name: string; update: Uint8Array; incarnation: number | undefined }
  | { op: 'compact'; name: string; snapshot: Uint8Array; through: number; incarnation: number | undefined }
  | { op: 'delete'; name: string }
  | { op: 'claim-clients'; name: string; owner: string; clientIds: number[] }
  | { op: 'load-client-owners'; name: string }
  | { op: 'ping' }
  | { op: 'list' }
  | { op: 'lock-load' }
  | { op: 'lock-grant'; key: string; owner: string; expiresAt: number }
  | { op: 'lock-renew'; key: string; token: number; expiresAt: number }
  | { op: 'lock-end'; key: string; token: number }
  | { op: 'webhook-enqueue'; deliveries: NewWebhookDelivery[] }
  | { op: 'webhook-claim'; now: number; limit: number; leaseMs: number }
  | { op: 'webhook-remove'; deliveryId: string }
  | { op: 'webhook-retry'; deliveryId: string; attempts: number; nextAt: number }
  | { op: 'webhook-rewrite'; deliveryId: string; body: string; nextAt: number; heldUntil: number }
  | { op: 'webhook-stats' }
  | { op: 'close' }
);

export type WorkerReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string; code?: string | undefined };

/** First message of the worker: whether the database opened. */
export type WorkerReady = { ready: true } | { ready: false; message: string };
