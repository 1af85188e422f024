/**
 * The catalog table: one row per product, with its name and price editable in place, its
 * stock count, a Buy control and a Restock control. Rows are kept across renders, and a field
 * someone is typing in is never overwritten by a remote change.
 */
import type { Product } from './catalog.js';

export interface TableActions {
  rename(id: string, name: string): void;
  reprice(id: string, cents: number): void;
  buy(id: string, quantity: number): Promise<void>;
  restock(id: string, count: number): Promise<void>;
}

interface Row {
  tr: HTMLTableRowElement;
  name: HTMLInputElement;
  price: HTMLInputElement;
  stock: HTMLTableCellElement;
}

export function formatPrice(cents: number): string {
  return (cents / 100).toFixed(2);
}

export function parsePrice(text: string): number | undefined {
  const value = Number(text);
  return text.trim() !== '' && Number.isFinite(value) && value >= 0 ? Math.round(value * 100) : undefined;
}

export function createProductTable(body: HTMLElement, actions: TableActions) {
  const rows = new Map<string, Row>();

  function setUnlessEditing(input: HTMLInputElement, value: string): void {
    if (document.activeElement !== input && input.value !== value) input.value = value;
  }

  /** An amount input and a button that runs `run(amount)`, disabled while it runs. */
  function amountControl(label: string, busyLabel: string, initial: number, run: (amount: number) => Promise<void>): HTMLTableCellElement {
    const cell = document.createElement('td');
    const amount = Object.assign(document.createElement('input'), { type: 'number', min: '1', step: '1', value: String(initial) });
    amount.className = 'amount';
    amount.setAttribute('aria-label', `${label} quantity`);
    const button = Object.assign(document.createElement('button'), { type: 'button', textContent: label });
    button.addEventListener('click', () => {
      button.disabled = true;
      button.textContent = busyLabel;
      void run(Number(amount.value)).finally(() => {
        button.disabled = false;
        button.textContent = label;
      });
    });
    cell.append(amount, button);
    return cell;
  }

  function createRow(id: string): Row {
    const tr = document.createElement('tr');
    const name = Object.assign(document.createElement('input'), { type: 'text', maxLength: 80 });
    name.setAttribute('aria-label', 'product name');
    name.addEventListener('change', () => actions.rename(id, name.value.trim()));
    const price = Object.assign(document.createElement('input'), { type: 'number', min: '0', step: '0.01' });
    price.setAttribute('aria-label', 'price');
    price.className = 'price';
    price.addEventListener('change', () => {
      const cents = parsePrice(price.value);
      if (cents !== undefined) actions.reprice(id, cents);
    });
    const nameCell = document.createElement('td');
    nameCell.append(name);
    const priceCell = document.createElement('td');
    priceCell.append(price);
    const stock = document.createElement('td');
    stock.className = 'stock';
    tr.append(
      nameCell,
      priceCell,
      stock,
      amountControl('Buy', 'Buying…', 1, (n) => actions.buy(id, n)),
      amountControl('Restock', 'Restocking…', 10, (n) => actions.restock(id, n)),
    );
    return { tr, name, price, stock };
  }

  /** Shows `products` in this order, with their stock counts (undefined: never stocked). */
  function render(products: Product[], stock: (id: string) => number | undefined): void {
    const seen = new Set<string>();
    for (const [index, product] of products.entries()) {
      seen.add(product.id);
      let row = rows.get(product.id);
      if (!row) rows.set(product.id, (row = createRow(product.id)));
      setUnlessEditing(row.name, product.name);
      setUnlessEditing(row.price, formatPrice(product.price));
      const count = stock(product.id);
      row.stock.textContent = count === undefined ? '—' : String(count);
      row.stock.dataset.level = count === undefined || count === 0 ? 'none' : count < 5 ? 'low' : 'ok';
      // Follow `products`' order, moving a row only when it is out of place: a moved row loses
      // the focus of an input being typed in.
      const here = body.children[index] ?? null;
      if (here !== row.tr) body.insertBefore(row.tr, here);
    }
    for (const [id, row] of rows) {
      if (seen.has(id)) continue;
      row.tr.remove();
      rows.delete(id);
    }
  }

  return { render };
}
