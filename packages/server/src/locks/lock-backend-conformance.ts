/**
 * The `LockBackend` conformance suite: the contract in lock-backend.ts, case by case, for every
 * backend (embedded, forwarded, etcd, postgres). Hard promises: tokens strictly increase per key (also
 * across a restart), one holder at a time, only the holder renews, releases or checks (and no
 * refusal names its token), unrenewed leases expire on time, and an authority that cannot be
 * reached answers `unavailable` within its deadline rather than a wrong answer. Runner
 * pattern: see `@capsync/core/conformance` (conformance-case.ts).
 */
import { conformanceChecks, conformanceOutcome, required, type ConformanceCase, type HarnessBase } from '@capsync/core/conformance';
import type { LockBackend, LockGrant } from './lock-backend.js';

/** A backend whose way to its authority (network, or its own storage) can be cut and healed. */
export interface CuttableBackend {
  backend: LockBackend;
  cut(): void;
  heal(): void;
}

export interface LockBackendHarness extends HarnessBase {
  /** A backend, as a relay has it (one per case); the suite closes it after the case. */
  open(): Promise<LockBackend>;
  /** Closes `backend` and opens it again on the same authority and storage (a relay restart). */
  restart?(backend: LockBackend): Promise<LockBackend>;
  /**
   * Another backend on the same authority as those of `open`, as another relay of a cluster or
   * mesh has it (etcd, PostgreSQL, forwarding to one authority relay); the suite closes it. Absent
   * where the authority is the relay itself (embedded).
   */
  openSibling?(): Promise<LockBackend>;
  /** A backend whose authority can be made unreachable (a partition, or its storage failing). */
  openCuttable?(): Promise<CuttableBackend>;
  /** Every method must settle within this (plus `slackMs`) when the authority is unreachable. */
  readonly opTimeoutMs: number;
  /** Timer, event-loop and network slack allowed on top of a deadline. */
  readonly slackMs: number;
  /** True where the authority runs (it emits `expired`); a forwarding backend never does. */
  readonly emitsExpired: boolean;
}

export type LockBackendCase = ConformanceCase<LockBackendHarness>;

const { fail, ok, equal, rejectsWith } = conformanceChecks('LockBackend');
const ALICE = 'sub:alice';
const BOB = 'sub:bob';

/** A key no other case uses (letters only, so a token never matches part of it in a message). */
let keys = 0;
const run = Math.random().toString(36).replace(/[^a-z]/g, '').slice(0, 6);
function freshKey(name: string): string {
  let n = ++keys;
  let suffix = '';
  do (suffix = String.fromCharCode(97 + (n % 26)) + suffix), (n = Math.floor(n / 26));
  while (n > 0);
  return `conformance-${name}-${run}${suffix}`;
}

async function withBackends(h: LockBackendHarness, fn: (open: () => Promise<LockBackend>, opened: LockBackend[]) => Promise<void>): Promise<void> {
  const opened: LockBackend[] = [];
  try {
    await fn(async () => {
      const b = await h.open();
      opened.push(b);
      return b;
    }, opened);
  } finally {
    await Promise.all(opened.map((b) => b.close()));
  }
}

const acquire = (b: LockBackend, key: string, owner = ALICE, ttlMs = 10_000, waitMs = 0, signal?: AbortSignal): Promise<LockGrant> =>
  b.acquire({ key, ttlMs, waitMs, owner, ...(signal ? { signal } : {}) });

export const lockBackendConformance: LockBackendCase[] = [
  {
    name: 'tokens strictly increase per key, over grants and releases, whoever acquires; keys are independent',
    run: (h) =>
      withBackends(h, async (open) => {
        const b = await open();
        const k = freshKey('tokens');
        let last = 0;
        for (let i = 0; i < 10; i++) {
          const g = await acquire(b, k, i % 2 ? ALICE : BOB);
          equal(g.key, k, 'granted key');
          ok(Number.isSafeInteger(g.token) && g.token > last, `token ${g.token} after ${last}`);
          ok(g.ttlMs >= 10_000, `granted ttl ${g.ttlMs} at least the requested 10000`);
          last = g.token;
          await b.release(k, g.token, i % 2 ? ALICE : BOB);
        }
        const other = await acquire(b, freshKey('tokens-other'));
        ok(other.token > 0, 'a token of another key');
        const again = await acquire(b, k);
        ok(again.token > last, 'token after another key was granted');
      }),
  },
  {
    name: 'one holder at a time: a second acquire is refused lock-timeout; waiters are served first come, first served',
    run: (h) =>
      withBackends(h, async (open) => {
        const b = await open();
        const k = freshKey('holder');
        const first = await acquire(b, k);
        await rejectsWith(acquire(b, k, BOB), 'lock-timeout', 'acquire of a held key with waitMs 0');
        const order: number[] = [];
        const waiters = [1, 2, 3].map((n) => acquire(b, k, BOB, 10_000, 10_000).then((g) => (order.push(n), g)));
        let token = first.token;
        let owner = ALICE;
        for (const w of waiters) {
          await b.release(k, token, owner);
          const g = await w;
          ok(g.token > token, `waiter's token ${g.token} after ${token}`);
          token = g.token;
          owner = BOB;
        }
        equal(order.join(','), '1,2,3', 'order the waiters were served');
        await b.release(k, token, BOB);
      }),
  },
  {
    name: 'a waiter gets lock-timeout once waitMs has passed, not before; an aborted waiter is withdrawn and granted nothing',
    run: (h) =>
      withBackends(h, async (open) => {
        const b = await open();
        const k = freshKey('wait');
        const held = await acquire(b, k);
        const started = performance.now();
        await rejectsWith(acquire(b, k, BOB, 10_000, 200), 'lock-timeout', 'a waiter past waitMs');
        const waited = performance.now() - started;
        ok(waited >= 199, `lock-timeout after ${waited.toFixed(0)} ms, before waitMs 200`);
        ok(waited < 200 + h.opTimeoutMs + h.slackMs, `lock-timeout after ${waited.toFixed(0)} ms`);
        const abort = new AbortController();
        const withdrawn = acquire(b, k, BOB, 10_000, 10_000, abort.signal);
        abort.abort();
        await rejectsWith(withdrawn, 'unavailable', 'an aborted waiter');
        await b.release(k, held.token, ALICE);
        // Nobody holds it for the withdrawn waiter: free at once.
        const next = await acquire(b, k);
        ok(next.token > held.token, 'token after the withdrawn waiter');
      }),
  },
  {
    name: 'only the holder renews, releases or checks: another owner gets not-owner, nothing changes, and no message names the token',
    run: (h) =>
      withBackends(h, async (open) => {
        const b = await open();
        const k = freshKey('owner');
        const g = await acquire(b, k, ALICE);
        const refusals = [
          await rejectsWith(b.renew(k, g.token, 3_600_000, BOB), 'not-owner', 'renew by another owner'),
          await rejectsWith(b.release(k, g.token, BOB), 'not-owner', 'release by another owner'),
          await rejectsWith(b.check(k, g.token, BOB), 'not-owner', 'check by another owner'),
        ];
        await rejectsWith(acquire(b, k, BOB), 'lock-timeout', 'acquire by another owner');
        await b.check(k, g.token, ALICE);
        const renewed = await b.renew(k, g.token, 10_000, ALICE);
        equal(renewed.token, g.token, 'token after the holder renewed');
        await b.release(k, g.token, ALICE);
        const next = await acquire(b, k, BOB);
        const stale = await rejectsWith(b.check(k, g.token, ALICE), 'stale-token', 'check of a token older than the current one');
        for (const err of [...refusals, stale]) {
          for (const token of [g.token, next.token]) {
            if (new RegExp(`\\b${token}\\b`).test(err.message)) fail(`refusal "${err.message}" names token ${token}`);
          }
          ok(!err.message.includes(ALICE) || err === stale, `refusal "${err.message}" names the holder`);
        }
      }),
  },
  {
    name: 'a token that is not current: renew, release and check reject lease-lost (stale-token for check once a newer one exists)',
    run: (h) =>
      withBackends(h, async (open) => {
        const b = await open();
        const k = freshKey('current');
        const g = await acquire(b, k);
        await rejectsWith(b.check(k, g.token + 1, ALICE), 'lease-lost', 'check of a token never granted');
        await rejectsWith(b.renew(k, g.token + 1, 1_000, ALICE), 'lease-lost', 'renew of a token never granted');
        await rejectsWith(b.release(k, g.token + 1, ALICE), 'lease-lost', 'release of a token never granted');
        await b.check(k, g.token, ALICE);
        await b.release(k, g.token, ALICE);
        await rejectsWith(b.check(k, g.token, ALICE), 'lease-lost', 'check after release');
        await rejectsWith(b.release(k, g.token, ALICE), 'lease-lost', 'second release');
        await rejectsWith(b.renew(k, g.token, 1_000, ALICE), 'lease-lost', 'renew after release');
        const next = await acquire(b, k);
        await rejectsWith(b.check(k, g.token, ALICE), 'stale-token', 'check of the older token');
        await b.release(k, next.token, ALICE);
      }),
  },
  {
    name: 'an unrenewed lease expires ttlMs after it was granted (never before), and the next waiter gets a larger token',
    timeoutMs: 30_000,
    run: (h) =>
      withBackends(h, async (open) => {
        const b = await open();
        const k = freshKey('expiry');
        const expired: [string, number][] = [];
        b.on('expired', (key, token) => void (key === k && expired.push([key, token])));
        const started = performance.now();
        const g = await acquire(b, k, ALICE, 300);
        const granted = performance.now();
        const next = await acquire(b, k, BOB, 10_000, 10_000);
        const at = performance.now();
        ok(at - started >= 299, `the next holder got it ${(at - started).toFixed(0)} ms after the acquire of a 300 ms lease`);
        ok(at - granted < 300 + h.slackMs, `the 300 ms lease ended ${(at - granted).toFixed(0)} ms after its grant`);
        ok(next.token > g.token, 'token after expiry');
        if (h.emitsExpired) equal(expired.map(([, t]) => t).join(','), String(g.token), 'expired events');
        else equal(expired.length, 0, 'expired events of a backend that does not run the authority');
        await rejectsWith(b.renew(k, g.token, 1_000, ALICE), 'lease-lost', 'renew of an expired lease');
        await rejectsWith(b.check(k, g.token, ALICE), 'stale-token', 'check of an expired lease with a newer holder');
        await b.release(k, next.token, BOB);
      }),
  },
  {
    name: 'renew moves the deadline: a renewed lease is still held past its first ttl',
    timeoutMs: 30_000,
    run: (h) =>
      withBackends(h, async (open) => {
        const b = await open();
        const k = freshKey('renew');
        const g = await acquire(b, k, ALICE, 200);
        const r = await b.renew(k, g.token, 10_000, ALICE);
        equal(r.token, g.token, 'token after renew');
        ok(r.ttlMs >= 10_000, `renewed ttl ${r.ttlMs}`);
        // Waits past the first deadline (200 ms) and finds the key still held.
        await rejectsWith(acquire(b, k, BOB, 10_000, 400), 'lock-timeout', 'acquire while the renewed lease runs');
        await b.check(k, g.token, ALICE);
        await b.release(k, g.token, ALICE);
      }),
  },
  {
    name: 'backends on one authority are one lock: one holder and increasing tokens across them, and a lease checked or released through another',
    needs: ['openSibling'],
    run: (h) =>
      withBackends(h, async (open, opened) => {
        const a = await open();
        const b = await required(h, 'openSibling').call(h);
        opened.push(b);
        const k = freshKey('sibling');
        const g = await acquire(a, k, ALICE);
        await rejectsWith(acquire(b, k, BOB), 'lock-timeout', "acquire through another backend of a key held through the first");
        await b.check(k, g.token, ALICE);
        await rejectsWith(b.check(k, g.token, BOB), 'not-owner', 'check by another owner through another backend');
        const waiting = acquire(b, k, BOB, 10_000, 10_000);
        // Its owner may end it through any relay (a client that failed over).
        await b.release(k, g.token, ALICE);
        const next = await waiting;
        ok(next.token > g.token, `token ${next.token} granted through another backend after ${g.token}`);
        await rejectsWith(a.check(k, g.token, ALICE), 'stale-token', 'check through the first backend of its own lease, replaced through another');
        await a.check(k, next.token, BOB);
        await a.release(k, next.token, BOB);
        // Through a third backend: the etcd backend keeps counting a lease it granted as its own
        // after it was released through another relay, until that lease's deadline, and refuses
        // acquires of the key meanwhile (a liveness limit, not a safety one; not pinned here).
        const c = await required(h, 'openSibling').call(h);
        opened.push(c);
        const last = await acquire(c, k, ALICE);
        ok(last.token > next.token, `token ${last.token} after ${next.token}`);
        await c.release(k, last.token, ALICE);
      }),
  },
  {
    name: 'a restart keeps live leases and their owners and never reuses a token',
    needs: ['restart'],
    run: (h) =>
      withBackends(h, async (open, opened) => {
        const restart = required(h, 'restart').bind(h);
        const b = await open();
        const live = freshKey('restart-live');
        const done = freshKey('restart-done');
        const l = await acquire(b, live, ALICE, 60_000);
        const d = await acquire(b, done, ALICE);
        await b.release(done, d.token, ALICE);
        opened.splice(opened.indexOf(b), 1);
        const again = await restart(b);
        opened.push(again);
        await again.check(live, l.token, ALICE);
        await rejectsWith(again.check(live, l.token, BOB), 'not-owner', 'check by another owner after the restart');
        await rejectsWith(acquire(again, live, BOB), 'lock-timeout', 'acquire of a live lease after the restart');
        const d2 = await acquire(again, done, BOB);
        ok(d2.token > d.token, `token ${d2.token} after the restart, ${d.token} before`);
        await again.release(live, l.token, ALICE);
        ok((await acquire(again, live, BOB)).token > l.token, 'token of the live key after its release');
      }),
  },
  {
    name: 'unavailable, not wrong: with the authority unreachable every method answers unavailable (or a right answer) within its deadline and nothing is granted; it works again once healed',
    needs: ['openCuttable'],
    timeoutMs: 60_000,
    run: async (h) => {
      const { backend: b, cut, heal } = await required(h, 'openCuttable').call(h);
      try {
        const held = freshKey('cut-held');
        const free = freshKey('cut-free');
        const g = await acquire(b, held, ALICE, 30_000);
        cut();
        const deadline = h.opTimeoutMs + h.slackMs;
        const timed = async (what: string, p: Promise<unknown>, right: string[]) => {
          const started = performance.now();
          const r = await conformanceOutcome(p);
          const ms = performance.now() - started;
          ok(r.code === 'unavailable' || right.includes(r.code), `${what} while cut off: ${r.code}${r.err ? ` (${r.err.message})` : ''}`);
          ok(ms < deadline, `${what} while cut off answered after ${ms.toFixed(0)} ms (deadline ${deadline})`);
          return r.code;
        };
        equal(await timed('acquire', acquire(b, free, ALICE, 300), []), 'unavailable', 'acquire while cut off');
        await timed('renew', b.renew(held, g.token, 30_000, ALICE), ['ok']);
        await timed('check', b.check(held, g.token, ALICE), ['ok']);
        const released = await timed('release', b.release(held, g.token, ALICE), ['ok']);
        heal();
        // Nothing was granted while cut off (a grant made anyway would have run out by now: its ttl was 300 ms).
        const retry = async <T>(fn: () => Promise<T>): Promise<T> => {
          const until = performance.now() + 10 * h.opTimeoutMs + 5_000;
          for (;;) {
            const r = await fn().then((v) => ({ v }), (err: { code?: string }) => ({ err }));
            if ('v' in r) return r.v;
            if (r.err.code !== 'unavailable' || performance.now() > until) throw r.err;
          }
        };
        const after = await retry(() => acquire(b, free, BOB, 10_000, 5_000));
        ok(after.token > 0, 'a grant once healed');
        if (released === 'ok') await rejectsWith(b.check(held, g.token, ALICE), 'lease-lost', 'check of the lease released while cut off');
        else await retry(() => b.release(held, g.token, ALICE).catch((err: { code?: string }) => (err.code === 'lease-lost' ? undefined : Promise.reject(err))));
        await b.release(free, after.token, BOB);
      } finally {
        heal();
        await b.close();
      }
    },
  },
];
