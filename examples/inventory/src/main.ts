/**
 * Entry point: opens the store named by the URL and wires the catalog table, the status
 * badge, the offline toggle and the message line to it.
 */
import { createClient, type SyncStatus } from '@capsync/client';
import { Inventory, describeError, describePurchase } from './inventory.js';
import { relayUrlFromLocation, storeNameFromLocation } from './location.js';
import { createProductTable, parsePrice } from './product-table.js';

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id} in index.html`);
  return el as T;
}

const STATUS_LABELS: Record<SyncStatus, string> = {
  offline: 'offline',
  connecting: 'connecting…',
  syncing: 'syncing…',
  synced: 'catalog saved',
};

const SAMPLES = [
  { name: 'Espresso cup', price: 900, description: 'Porcelain, 80 ml' },
  { name: 'Pour-over kettle', price: 4900, description: 'Gooseneck, 1 l' },
  { name: 'Coffee beans', price: 1450, description: 'Single origin, 250 g' },
];

/** The message line: 'ok' (a purchase went through), 'refused' (out of stock) or 'error'. */
function createMessageLine(line: HTMLElement) {
  line.addEventListener('click', () => (line.hidden = true));
  return (kind: 'ok' | 'refused' | 'error', text: string): void => {
    line.textContent = text;
    line.dataset.kind = kind;
    line.hidden = false;
  };
}

async function main(): Promise<void> {
  const storeName = storeNameFromLocation();
  document.title = `${storeName} · capsync store`;
  element('store-name').textContent = storeName;
  const show = createMessageLine(element('message'));

  const client = createClient({ url: relayUrlFromLocation(), storage: 'indexeddb' });
  // Resolves from this browser's replica, before any network: the catalog shows (and can be
  // edited) with the relay down.
  const inventory = await Inventory.open(client, storeName);
  const { handle } = inventory;

  const badge = element('status');
  const renderStatus = (): void => {
    const pending = handle.pending;
    const status: SyncStatus = pending > 0 && handle.status === 'synced' ? 'syncing' : handle.status;
    const label = STATUS_LABELS[status];
    badge.textContent = pending > 0 ? `${label.replace('…', '')} · ${pending} unsaved edit${pending === 1 ? '' : 's'}` : label;
    badge.dataset.status = status;
    badge.title =
      status === 'offline'
        ? 'Not connected: catalog edits are kept in this browser and sync later; purchases and restocks are refused.'
        : pending > 0
          ? 'Catalog edits kept in this browser, not yet durable on the relay.'
          : 'Connected to the store.';
  };
  handle.on('status', renderStatus);
  handle.on('pending', renderStatus);
  handle.on('error', (err) => show('error', `${err.code}: ${err.message}`));
  renderStatus();

  // Only the document's link goes down: a purchase is then refused at once (it could not read
  // the latest count), while catalog edits queue up locally.
  const offline = element<HTMLInputElement>('offline');
  offline.addEventListener('change', () => (offline.checked ? handle.disconnect() : handle.connect()));

  const nameOf = (id: string): string => inventory.product(id)?.name ?? id;
  const edit = (change: () => void): void => {
    try {
      change();
    } catch (err) {
      // A refused edit (an empty name, a negative price): say why and show the stored value again.
      show('error', err instanceof Error ? err.message : String(err));
      render();
    }
  };
  const table = createProductTable(element('products'), {
    rename: (id, name) => edit(() => inventory.updateProduct(id, { name })),
    reprice: (id, price) => edit(() => inventory.updateProduct(id, { price })),
    async buy(id, quantity) {
      try {
        const result = await inventory.purchase(id, quantity);
        show(result.ok ? 'ok' : 'refused', describePurchase(result, nameOf(id)));
      } catch (err) {
        show('error', describeError(err, 'purchase'));
      }
    },
    async restock(id, count) {
      try {
        const now = await inventory.restock(id, count);
        show('ok', `Restocked ${nameOf(id)}: ${now} in stock.`);
      } catch (err) {
        show('error', describeError(err, 'restock'));
      }
    },
  });

  const empty = element('empty');
  function render(): void {
    const products = inventory.products();
    table.render(products, (id) => inventory.stock(id));
    empty.hidden = products.length > 0;
  }
  // Coalesced to one render per frame: a sync round can bring many updates at once.
  let scheduled = false;
  inventory.onChange(() => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      render();
    });
  });
  render();

  element('samples').addEventListener('click', () => edit(() => SAMPLES.forEach((p) => inventory.addProduct(p))));
  const form = element<HTMLFormElement>('add');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const price = parsePrice(String(data.get('price') ?? ''));
    if (price === undefined) return show('error', 'Enter a price such as 12.50.');
    edit(() => {
      inventory.addProduct({ name: String(data.get('name') ?? '').trim(), price });
      form.reset();
    });
  });

  window.addEventListener('pagehide', () => void client.close());
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) location.reload();
  });
}

main().catch((err: unknown) => {
  const line = document.getElementById('message');
  if (line) {
    line.textContent = `could not open the store: ${err instanceof Error ? err.message : String(err)}`;
    line.dataset.kind = 'error';
    line.hidden = false;
  }
  console.error(err);
});
