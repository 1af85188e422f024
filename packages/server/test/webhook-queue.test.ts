/** Every WebhookQueue runs the WebhookQueue conformance suite: memory, SQLite (in and out of its worker), PostgreSQL. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe } from 'vitest';
import { webhookQueueConformance } from '@capsync/server/conformance';
import { MemoryWebhookQueue, type WebhookQueue } from '../src/webhooks/webhook-queue.js';
import { SqliteDocStore } from '../src/storage/sqlite-store.js';
import { SqliteWorkerStore } from '../src/storage/sqlite-worker-store.js';
import { PostgresDocStore } from '../src/storage/postgres-store.js';
import { runConformance } from '../../../test/support/conformance.js';
import { describePostgres } from '../../../test/support/describe-postgres.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-webhook-queue-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

describe('MemoryWebhookQueue conformance', () => {
  runConformance(webhookQueueConformance, {
    create: async () => new MemoryWebhookQueue(),
    absent: { reopen: 'a memory queue keeps nothing past its process', sibling: 'a memory queue is not shared' },
  });
});

type Owner = { webhooks: WebhookQueue; close(): Promise<void> };

/** The queue of a store (`webhooks`), keyed back to its store to close, reopen or open again beside it. */
function storeHarness<S extends Owner>(create: () => Promise<{ store: S; again(): Promise<S> }>, shared: boolean) {
  const owners = new Map<WebhookQueue, { store: S; again(): Promise<S> }>();
  const track = (o: { store: S; again(): Promise<S> }) => (owners.set(o.store.webhooks, o), o.store.webhooks);
  return {
    create: async () => track(await create()),
    reopen: async (q: WebhookQueue) => {
      const o = owners.get(q)!;
      await o.store.close();
      return track({ store: await o.again(), again: o.again });
    },
    ...(shared
      ? {
          sibling: async (q: WebhookQueue) => {
            const o = owners.get(q)!;
            return track({ store: await o.again(), again: o.again });
          },
        }
      : {}),
    dispose: async (q: WebhookQueue) => owners.get(q)?.store.close(),
    absent: (shared ? {} : { sibling: 'one relay owns a SQLite file' }) as Record<string, string>,
  };
}

describe('SqliteWebhookTable (SqliteDocStore.webhooks) conformance', () => {
  runConformance(
    webhookQueueConformance,
    storeHarness(async () => {
      const file = path.join(root, `db-${n++}`, 'capsync.db');
      return { store: new SqliteDocStore(file), again: async () => new SqliteDocStore(file) };
    }, false),
  );
});

describe('SqliteWorkerStore.webhooks conformance', () => {
  runConformance(
    webhookQueueConformance,
    storeHarness(async () => {
      const file = path.join(root, `db-${n++}`, 'capsync.db');
      return { store: await SqliteWorkerStore.open(file), again: () => SqliteWorkerStore.open(file) };
    }, false),
  );
});

describePostgres('PostgresWebhookQueue (PostgresDocStore.webhooks) conformance', (server) => {
  runConformance(
    webhookQueueConformance,
    storeHarness(async () => {
      const url = await server().createDatabase();
      return { store: await PostgresDocStore.open(url), again: () => PostgresDocStore.open(url) };
    }, true),
  );
});
