/**
 * The `WebhookQueue` conformance suite (the contract in webhook-queue.ts). Hard promises: what
 * `enqueue` resolved survives a reopen; claims never hand out one delivery twice while its
 * lease runs, also when they race; a lapsed lease makes it due again; retries and removals stick.
 * Runner pattern: see `@capsync/core/conformance` (conformance-case.ts).
 */
import { conformanceChecks, required, type ConformanceCase, type HarnessBase } from '@capsync/core/conformance';
import type { NewWebhookDelivery, WebhookQueue } from './webhook-queue.js';

export interface WebhookQueueHarness extends HarnessBase {
  /** A fresh, empty queue. */
  create(): Promise<WebhookQueue>;
  /** Closes the queue's storage and opens it again (a relay restart). Omit for memory. */
  reopen?(queue: WebhookQueue): Promise<WebhookQueue>;
  /** A second queue on the same storage (another relay of a cluster). Omit where storage is not shared. */
  sibling?(queue: WebhookQueue): Promise<WebhookQueue>;
  /** Releases what the harness opened, after each case. */
  dispose?(queue: WebhookQueue): Promise<void>;
}

export type WebhookQueueCase = ConformanceCase<WebhookQueueHarness>;

const { ok, equal } = conformanceChecks('WebhookQueue');

async function withQueue(h: WebhookQueueHarness, fn: (q: WebhookQueue) => Promise<WebhookQueue | void>): Promise<void> {
  // `fn` returns the queue it ended with (after a reopen), for dispose.
  let queue = await h.create();
  try {
    queue = (await fn(queue)) ?? queue;
  } finally {
    await h.dispose?.(queue);
  }
}

let n = 0;
/** A delivery created at `createdAt`, with a body that checks byte-exact round trips. */
function delivery(createdAt: number, url = 'http://127.0.0.1:1/hook'): NewWebhookDelivery {
  const i = n++;
  return { id: `d-${i}-${Math.random().toString(36).slice(2)}`, eventId: `e-${i}`, url, body: JSON.stringify({ i, text: 'ünïcödé ✓ "quoted"' }), createdAt };
}

export const webhookQueueConformance: WebhookQueueCase[] = [
  {
    name: 'an empty queue has nothing to claim and no stats',
    run: (h) =>
      withQueue(h, async (q) => {
        equal((await q.claim(Date.now(), 10, 1_000)).length, 0, 'claimed');
        const s = await q.stats();
        equal(s.depth, 0, 'depth');
        equal(s.oldestCreatedAt, null, 'oldest');
        equal(s.nextDueAt, null, 'next due');
      }),
  },
  {
    name: 'enqueued deliveries are claimed oldest first, byte-exact, at most `limit`, then hidden for the lease',
    run: (h) =>
      withQueue(h, async (q) => {
        const t = 1_700_000_000_000;
        const ds = [delivery(t + 2), delivery(t), delivery(t + 1)];
        await q.enqueue(ds);
        const first = await q.claim(t + 10, 2, 1_000);
        equal(first.length, 2, 'claimed with limit 2');
        equal(first[0]!.id, ds[1]!.id, 'oldest first');
        equal(first[1]!.id, ds[2]!.id, 'then the next');
        for (const f of first) {
          const d = ds.find((x) => x.id === f.id)!;
          equal(f.body, d.body, 'body');
          equal(f.eventId, d.eventId, 'event id');
          equal(f.url, d.url, 'url');
          equal(f.createdAt, d.createdAt, 'createdAt');
          equal(f.attempts, 0, 'attempts');
        }
        const rest = await q.claim(t + 10, 10, 1_000);
        equal(rest.length, 1, 'the leased two are hidden');
        equal(rest[0]!.id, ds[0]!.id, 'the third');
        equal((await q.claim(t + 500, 10, 1_000)).length, 0, 'nothing due while leases run');
        const again = await q.claim(t + 1_011, 10, 1_000);
        equal(again.length, 3, 'due again when the leases lapse (at least once)');
        equal((await q.stats()).depth, 3, 'depth');
      }),
  },
  {
    name: 'retryAt records the attempts and hides the delivery until then; remove drops it',
    run: (h) =>
      withQueue(h, async (q) => {
        const t = 1_700_000_000_000;
        const [a, b] = [delivery(t), delivery(t + 1)];
        await q.enqueue([a!, b!]);
        await q.claim(t, 10, 100);
        await q.retryAt(a!.id, 3, t + 5_000);
        await q.remove(b!.id);
        await q.remove('unknown');
        await q.retryAt('unknown', 1, t);
        let s = await q.stats();
        equal(s.depth, 1, 'depth after remove');
        equal(s.nextDueAt, t + 5_000, 'next due');
        equal(s.oldestCreatedAt, t, 'oldest');
        equal((await q.claim(t + 4_999, 10, 100)).length, 0, 'not due before its retry time');
        const [due] = await q.claim(t + 5_000, 10, 100);
        equal(due?.id, a!.id, 'due at its retry time');
        equal(due?.attempts, 3, 'attempts kept');
        await q.remove(a!.id);
        s = await q.stats();
        equal(s.depth, 0, 'empty');
      }),
  },
  {
    name: 'a delivery queued ahead (nextAt) is due then, or when rewrite says, with the new body; rewrite survives a reopen',
    run: (h) =>
      withQueue(h, async (q) => {
        const t = 1_700_000_000_000;
        const ahead = { ...delivery(t), nextAt: t + 10_000 };
        const other = { ...delivery(t), nextAt: t + 10_000 };
        await q.enqueue([ahead, other]);
        equal((await q.stats()).nextDueAt, t + 10_000, 'next due');
        equal((await q.claim(t + 9_999, 10, 100)).length, 0, 'not due before nextAt');
        await q.rewrite(ahead.id, '{"rewritten":true}', t + 50);
        await q.rewrite('unknown', '{}', t);
        if (h.reopen) q = await h.reopen(q);
        const [due] = await q.claim(t + 50, 10, 100);
        equal(due?.id, ahead.id, 'the rewritten one is due at its new time');
        equal(due?.body, '{"rewritten":true}', 'with its new body');
        equal(due?.createdAt, t, 'created when it was queued');
        await q.remove(ahead.id);
        const [later] = await q.claim(t + 10_000, 10, 100);
        equal(later?.id, other.id, 'the other at its nextAt');
        return q;
      }),
  },
  {
    name: 'enqueue is idempotent per delivery id',
    run: (h) =>
      withQueue(h, async (q) => {
        const d = delivery(1_000);
        await q.enqueue([d]);
        await q.enqueue([d]);
        equal((await q.stats()).depth, 1, 'depth');
      }),
  },
  {
    name: 'racing claims never hand out one delivery twice',
    run: (h) =>
      withQueue(h, async (q) => {
        const t = 1_700_000_000_000;
        await q.enqueue(Array.from({ length: 50 }, (_, i) => delivery(t + i)));
        const other = h.sibling ? await h.sibling(q) : q;
        try {
          const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? other : q).claim(t + 100, 8, 60_000)));
          const ids = claims.flat().map((d) => d.id);
          equal(new Set(ids).size, ids.length, 'distinct deliveries');
          equal(ids.length, 50, 'every delivery claimed once');
        } finally {
          if (other !== q) await h.dispose?.(other);
        }
      }),
  },
  {
    name: 'what enqueue resolved, and its retries, survive a reopen',
    needs: ['reopen'],
    run: (h) =>
      withQueue(h, async (q) => {
        const t = 1_700_000_000_000;
        const [a, b] = [delivery(t), delivery(t + 1)];
        await q.enqueue([a!, b!]);
        await q.claim(t, 1, 100);
        await q.retryAt(a!.id, 2, t + 1_000);
        const reopened = await required(h, 'reopen')(q);
        const s = await reopened.stats();
        equal(s.depth, 2, 'depth after reopen');
        const due = await reopened.claim(t + 1_000, 10, 100);
        equal(due.length, 2, 'both due');
        const ra = due.find((d) => d.id === a!.id);
        ok(ra, 'the retried one is there');
        equal(ra!.attempts, 2, 'its attempts');
        equal(ra!.body, a!.body, 'its body');
        return reopened;
      }),
  },
];
