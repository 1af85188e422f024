/**
 * The product catalog: the AP half of the store. Products live in the document's root Y.Map
 * `catalog`, one nested Y.Map per product (name, price, description) keyed by product id.
 * Edits are plain document edits: they apply at once, work offline, and merge when replicas
 * meet. A nested map per product (rather than one object per product) means two people who
 * edit different fields of one product, one the price and the other the name, both keep
 * their change; two edits of the same field resolve to one of them on every replica.
 */
import * as Y from 'yjs';

export const CATALOG_MAP = 'catalog';

export interface Product {
  id: string;
  name: string;
  /** In cents (an integer), so sums never pick up floating-point noise. */
  price: number;
  description: string;
}

export type ProductFields = Omit<Product, 'id'>;

export class Catalog {
  private readonly map: Y.Map<unknown>;

  constructor(private readonly doc: Y.Doc) {
    this.map = doc.getMap(CATALOG_MAP);
  }

  /** Every product, by name then id (the same order on every replica). */
  products(): Product[] {
    const out: Product[] = [];
    for (const [id, fields] of this.map.entries()) {
      if (fields instanceof Y.Map) out.push(readProduct(id, fields));
    }
    return out.sort((a, b) => a.name.localeCompare(b.name) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  product(id: string): Product | undefined {
    const fields = this.map.get(id);
    return fields instanceof Y.Map ? readProduct(id, fields) : undefined;
  }

  /**
   * Adds a product and returns it. Without an `id`, a random one is made: two replicas that
   * add products offline must not pick the same key, or one product would replace the other.
   */
  add(fields: Partial<ProductFields> & { id?: string; name: string }): Product {
    const id = fields.id ?? randomId();
    if (!id) throw new RangeError('a product id must not be empty');
    if (this.map.has(id)) throw new RangeError(`product "${id}" already exists`);
    const product: Product = { id, name: fields.name, price: fields.price ?? 0, description: fields.description ?? '' };
    checkFields(product);
    const entry = new Y.Map<unknown>();
    this.doc.transact(() => {
      this.map.set(id, entry);
      entry.set('name', product.name);
      entry.set('price', product.price);
      entry.set('description', product.description);
    });
    return product;
  }

  /** Changes the given fields of a product (others are left alone, so concurrent edits merge). */
  update(id: string, patch: Partial<ProductFields>): void {
    const entry = this.map.get(id);
    if (!(entry instanceof Y.Map)) throw new RangeError(`no product "${id}" in the catalog`);
    checkFields(patch);
    this.doc.transact(() => {
      for (const field of ['name', 'price', 'description'] as const) {
        const value = patch[field];
        if (value !== undefined && entry.get(field) !== value) entry.set(field, value);
      }
    });
  }
}

function readProduct(id: string, fields: Y.Map<unknown>): Product {
  const name = fields.get('name');
  const price = fields.get('price');
  const description = fields.get('description');
  return {
    id,
    name: typeof name === 'string' ? name : id,
    price: typeof price === 'number' ? price : 0,
    description: typeof description === 'string' ? description : '',
  };
}

function checkFields(fields: Partial<ProductFields>): void {
  if (fields.name !== undefined && !fields.name.trim()) throw new RangeError('a product needs a name');
  if (fields.price !== undefined && !(Number.isSafeInteger(fields.price) && fields.price >= 0)) {
    throw new RangeError(`a price is a whole number of cents, not ${fields.price}`);
  }
}

/** 8 hex digits. getRandomValues, not randomUUID: the latter needs a secure context (https). */
function randomId(): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(4));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
