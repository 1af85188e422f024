/**
 * The inventory example's logic module (examples/inventory/src/inventory.ts) against a real
 * relay child process, with each client behind its own TCP fault proxy: two shoppers and an
 * admin share one store. Concurrent purchases never oversell; a shopper cut off from the
 * relay keeps editing the catalog but is refused purchases in time and with a clear message;
 * after the partition heals, every replica agrees on catalog and stock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError, createClient, type CapsyncClient, type WebSocketConstructor } from '@capsync/client';
import {
  Inventory,
  OutcomeUnknownError,
  describeError,
  describePurchase,
  type PurchaseResult,
} from '../../examples/inventory/src/inventory.js';
import { TEST_CLIENT_DEFAULTS, whenStatus } from '../support/client-fixture.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { recordingWebSocket } from '../support/recording-websocket.js';
import { withTimeout } from '../support/wait.js';

const STORE = 'examples/inventory-store';
const INITIAL_STOCK = 10;
const UNREACHABLE =
  'The store is unreachable: purchases need a connection to the stock service. Your catalog edits are saved and will sync.';

const { WebSocket, unheard } = recordingWebSocket();

/**
 * Shopper A's document link delivers what the relay sends this late (its lock link is not slowed):
 * as when the two connections take different routes, or the relay's broadcast queue is long.
 * A's lock is then granted before the previous buyer's write has reached A's replica, so only
 * the fresh read after the grant keeps A from selling from a stale count (without the
 * `whenSynced` step of stock.ts, the first test sells 19 of 10).
 */
const DOC_LINK_LAG_MS = 100;

/** `WebSocket` whose incoming messages on the store's document link arrive `lagMs` late, in order. */
function laggingWebSocket(lagMs: number): WebSocketConstructor {
  class LaggingWebSocket extends WebSocket {
    private readonly lagged: boolean;
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.lagged = decodeURIComponent(new URL(url).pathname) === `/${STORE}`;
    }
    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event !== 'message' || !this.lagged) return super.emit(event, ...args);
      setTimeout(() => super.emit(event, ...args), lagMs);
      return true;
    }
  }
  return LaggingWebSocket as unknown as WebSocketConstructor;
}

interface Party {
  label: string;
  proxy: FaultProxy;
  client: CapsyncClient;
  inventory: Inventory;
}

let relay: RestartableRelay;
let admin: Party;
let shopperA: Party;
let shopperB: Party;
const parties = (): Party[] => [admin, shopperA, shopperB];

async function party(label: string, docLinkLagMs = 0): Promise<Party> {
  const proxy = await FaultProxy.start(Number(new URL(relay.url).port));
  const client = createClient({
    url: proxy.url,
    storage: 'memory',
    WebSocket: docLinkLagMs > 0 ? laggingWebSocket(docLinkLagMs) : (WebSocket as unknown as WebSocketConstructor),
    ...TEST_CLIENT_DEFAULTS,
    lockTimeoutMs: 500,
  });
  return { label, proxy, client, inventory: await Inventory.open(client, STORE) };
}

/** Resolves once `check()` holds, re-checking on every change of the store (no polling). */
function whenStore(inventory: Inventory, check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  let stop = (): void => {};
  const reached = new Promise<void>((resolve) => {
    const onChange = (): void => {
      if (check()) resolve();
    };
    stop = inventory.onChange(onChange);
    onChange();
  });
  return withTimeout(reached, timeoutMs, what).finally(stop);
}

/** Every local edit durable on the relay, then every replica caught up with it. */
async function settle(): Promise<void> {
  await Promise.all(parties().map((p) => p.inventory.handle.flush({ timeoutMs: 5_000 })));
  await Promise.all(parties().map((p) => p.inventory.handle.whenSynced({ timeoutMs: 5_000 })));
}

function view(p: Party) {
  return { products: p.inventory.products(), stock: Object.fromEntries(p.inventory.stockLevels()) };
}

function expectAllAgree(): void {
  const [first, ...others] = parties().map(view);
  for (const other of others) expect(other).toEqual(first);
}

/** Buys `quantity` of 'mug' again and again until refused; returns the sales and the refusal. */
async function buyUntilRefused(p: Party, quantity: number) {
  const sales: Extract<PurchaseResult, { ok: true }>[] = [];
  for (;;) {
    const result = await p.inventory.purchase('mug', quantity, { waitMs: 3_000, timeoutMs: 2_000 });
    if (!result.ok) return { sales, refusal: result };
    sales.push(result);
  }
}

beforeAll(async () => {
  relay = await RestartableRelay.start();
  [admin, shopperA, shopperB] = await Promise.all([party('admin'), party('shopper A', DOC_LINK_LAG_MS), party('shopper B')]);
});

afterAll(async () => {
  await Promise.all(parties().map((p) => p?.client.close().catch(() => {})));
  await Promise.all(parties().map((p) => p?.proxy.close()));
  await relay?.dispose();
});

describe('inventory example: AP catalog, CP stock', () => {
  it('sells concurrently without overselling, and refuses what is not in stock', async () => {
    admin.inventory.addProduct({ id: 'mug', name: 'Mug', price: 1200, description: 'Stoneware, 350 ml' });
    admin.inventory.addProduct({ id: 'tee', name: 'T-shirt', price: 2500 });
    expect(await admin.inventory.restock('mug', INITIAL_STOCK)).toBe(INITIAL_STOCK);
    await settle();
    expect(shopperA.inventory.stock('mug')).toBe(INITIAL_STOCK);
    expect(shopperB.inventory.product('mug')).toMatchObject({ name: 'Mug', price: 1200 });
    expect(shopperB.inventory.stock('tee')).toBeUndefined();

    // Both shoppers buy at the same time, each until the store refuses them.
    const [a, b] = await Promise.all([buyUntilRefused(shopperA, 2), buyUntilRefused(shopperB, 3)]);
    const sales = [...a.sales, ...b.sales];
    const sold = sales.reduce((n, s) => n + s.quantity, 0);
    expect(sold).toBeLessThanOrEqual(INITIAL_STOCK);

    // The sales form one chain of decrements: each saw the count the previous one left.
    sales.sort((x, y) => y.remaining - x.remaining);
    let expected = INITIAL_STOCK;
    for (const sale of sales) {
      expected -= sale.quantity;
      expect(sale.remaining).toBe(expected);
    }

    // Refused with what was really left, which never grows back: both refusals saw too few.
    for (const [refusal, quantity] of [[a.refusal, 2], [b.refusal, 3]] as const) {
      expect(refusal).toMatchObject({ ok: false, reason: 'out-of-stock', quantity });
      expect(refusal.available).toBeLessThan(quantity);
    }
    await settle();
    for (const p of parties()) expect(p.inventory.stock('mug'), p.label).toBe(INITIAL_STOCK - sold);
    expect(INITIAL_STOCK - sold).toBeLessThan(2);

    // A plain out-of-stock refusal changes nothing and says so.
    await admin.inventory.restock('mug', 3 - (INITIAL_STOCK - sold)); // exactly 3 left
    const refused = await shopperA.inventory.purchase('mug', 5);
    expect(refused).toEqual({ ok: false, reason: 'out-of-stock', productId: 'mug', quantity: 5, available: 3 });
    expect(describePurchase(refused, 'Mug')).toBe('Out of stock: only 3 Mug left, so 5 could not be bought. Nothing was bought.');
    const none = await shopperB.inventory.purchase('tee', 1);
    expect(describePurchase(none, 'T-shirt')).toBe('T-shirt is out of stock: nothing was bought.');
    await settle();
    expect(shopperB.inventory.stock('mug')).toBe(3);
    expectAllAgree();
  });

  it('partitioned, a shopper edits the catalog but is refused purchases in time; the others carry on', async () => {
    await admin.inventory.restock('mug', 5); // 8 in stock
    await settle();

    shopperA.proxy.setMode('hold'); // TCP stays up, no byte gets through either way

    // The catalog is AP: A's edits apply at once, offline.
    shopperA.inventory.updateProduct('mug', { price: 1500 });
    shopperA.inventory.addProduct({ id: 'cap', name: 'Cap', price: 1800 });
    expect(shopperA.inventory.product('mug')?.price).toBe(1500);
    expect(shopperA.inventory.products().map((p) => p.id)).toEqual(['cap', 'mug', 'tee']);
    expect(shopperA.inventory.handle.pending).toBeGreaterThan(0);

    // Stock is CP: A's purchase is refused within its deadline, and nothing is bought.
    const waitMs = 300;
    const timeoutMs = 500;
    const started = performance.now();
    const err = await shopperA.inventory.purchase('mug', 1, { waitMs, timeoutMs }).then(
      () => null,
      (e: unknown) => e,
    );
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err).not.toBeInstanceOf(OutcomeUnknownError); // refused before anything was written
    expect((err as UnavailableError).code).toBe('unavailable');
    expect(elapsed).toBeLessThan(waitMs + timeoutMs + 400);
    expect(describeError(err)).toBe(UNREACHABLE);
    expect(describeError(err, 'restock')).toContain('restocks need a connection');
    expect(shopperA.inventory.stock('mug')).toBe(8);

    // B is not partitioned: it keeps buying, and does not see A's edits yet.
    for (const remaining of [7, 6]) {
      expect(await shopperB.inventory.purchase('mug', 1)).toMatchObject({ ok: true, remaining });
    }
    expect(shopperB.inventory.product('mug')?.price).toBe(1200);
    expect(shopperB.inventory.product('cap')).toBeUndefined();
    expect(shopperA.inventory.stock('mug')).toBe(8); // A's replica is stale, as AP reads may be
  });

  it('after the partition heals, every replica agrees, and a retried purchase works', async () => {
    shopperA.proxy.setMode('pass');

    const hasAEdits = (p: Party) => () => p.inventory.product('cap')?.price === 1800 && p.inventory.product('mug')?.price === 1500;
    await Promise.all([admin, shopperB].map((p) => whenStore(p.inventory, hasAEdits(p), `${p.label} to receive A's catalog edits`)));
    await whenStore(shopperA.inventory, () => shopperA.inventory.stock('mug') === 6, "A to receive B's purchases");
    await settle();
    expectAllAgree();
    expect(view(admin)).toEqual({
      products: [
        { id: 'cap', name: 'Cap', price: 1800, description: '' },
        { id: 'mug', name: 'Mug', price: 1500, description: 'Stoneware, 350 ml' },
        { id: 'tee', name: 'T-shirt', price: 2500, description: '' },
      ],
      stock: { mug: 6 },
    });

    // The purchase A was refused goes through now.
    await whenStatus(shopperA.inventory.handle, 'synced');
    expect(await shopperA.inventory.purchase('mug', 1)).toEqual({ ok: true, productId: 'mug', quantity: 1, remaining: 5 });
    await settle();
    expectAllAgree();
    expect(shopperB.inventory.stock('mug')).toBe(5);
    expect(unheard).toEqual([]);
  });
});
