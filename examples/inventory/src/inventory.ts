/**
 * A store's inventory on capsync, framework-free (Node and browsers): one document per store
 * holds the product catalog (AP: edit it anywhere, offline too; see catalog.ts) and the stock
 * counts (CP: fenced values changed only under their lock; see stock.ts).
 *
 * ```ts
 * const inventory = await Inventory.open(createClient({ url: 'ws://localhost:4000' }), 'my-store');
 * inventory.addProduct({ id: 'mug', name: 'Mug', price: 1200 });   // works offline
 * await inventory.restock('mug', 10);                              // needs the relay
 * const result = await inventory.purchase('mug', 2);               // { ok: true, remaining: 8 }
 * ```
 */
import type { CapsyncClient, DocHandle } from '@capsync/client';
import { Catalog, type Product, type ProductFields } from './catalog.js';
import { Stock, type PurchaseResult, type StockOptions } from './stock.js';

export { CATALOG_MAP, type Product, type ProductFields } from './catalog.js';
export { OutcomeUnknownError, stockKey, type PurchaseResult, type StockOptions } from './stock.js';
export { describeError, describePurchase, unreachableMessage, type StockAction } from './messages.js';

export class Inventory {
  private readonly catalog: Catalog;
  private readonly stockCounts: Stock;

  private constructor(
    readonly client: CapsyncClient,
    /** The store's document: `status`, `pending`, `connect()`/`disconnect()` for the UI. */
    readonly handle: DocHandle,
  ) {
    this.catalog = new Catalog(handle.doc);
    this.stockCounts = new Stock(client, handle);
  }

  /** Opens the store `name` from the local replica (no network needed) and starts syncing it. */
  static async open(client: CapsyncClient, name: string): Promise<Inventory> {
    return new Inventory(client, await client.open(name));
  }

  // ---- catalog (AP) ----

  products(): Product[] {
    return this.catalog.products();
  }

  product(id: string): Product | undefined {
    return this.catalog.product(id);
  }

  addProduct(fields: Partial<ProductFields> & { id?: string; name: string }): Product {
    return this.catalog.add(fields);
  }

  updateProduct(id: string, patch: Partial<ProductFields>): void {
    this.catalog.update(id, patch);
  }

  // ---- stock (CP) ----

  /** The product's count as this replica knows it; undefined if it was never stocked. */
  stock(id: string): number | undefined {
    return this.stockCounts.get(id);
  }

  /** Every stocked product's count, by product id. */
  stockLevels(): Map<string, number> {
    return this.stockCounts.all();
  }

  purchase(id: string, quantity: number, options?: StockOptions): Promise<PurchaseResult> {
    return this.stockCounts.purchase(id, quantity, options);
  }

  restock(id: string, count: number, options?: StockOptions): Promise<number> {
    return this.stockCounts.restock(id, count, options);
  }

  // ---- lifecycle ----

  /** Calls `listener` after every change of the store, local or remote; returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    const onUpdate = (): void => listener();
    this.handle.doc.on('update', onUpdate);
    return () => this.handle.doc.off('update', onUpdate);
  }

  /** Closes the store's document (the client stays open). */
  close(): Promise<void> {
    return this.handle.close();
  }
}
