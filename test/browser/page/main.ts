/**
 * The browser test page: the real `@capsync/client` (IndexedDB storage, cross-tab on) and a
 * small API on `window.capsync` that the tests drive with `page.evaluate` and
 * `page.waitForFunction`. The relay serves this page, so its WebSocket is the same origin.
 */
import * as Y from 'yjs';
import { createClient, type CapsyncClient, type DocHandle, type SyncStatus } from '@capsync/client';

export interface DocView {
  text: string;
  status: SyncStatus;
  pending: number;
  /** Every status this page saw since the document was opened, in order. */
  statuses: SyncStatus[];
  errors: string[];
}

export interface PageApi {
  /** Opens `doc` (resolves once the local replica is loaded) and starts recording its events. */
  open(doc: string): Promise<void>;
  /**
   * Loads subdocument `guid` of open document `doc` (its map 'pages', key `guid`; made there if
   * missing) and records its handle's events as document `${doc}#${guid}` for the calls below.
   */
  openSubdoc(doc: string, guid: string): Promise<void>;
  /** Appends `text` to the document's Y.Text 'text'. */
  append(doc: string, text: string): void;
  view(doc: string): DocView;
  flush(doc: string, durability: 'local' | 'relay', timeoutMs: number): Promise<void>;
  whenSynced(doc: string, timeoutMs: number): Promise<void>;
  close(doc: string): Promise<void>;
}

declare global {
  interface Window {
    capsync: PageApi;
  }
}

let client: CapsyncClient | null = null;
const docs = new Map<string, { handle: DocHandle; statuses: SyncStatus[]; errors: string[] }>();

function record(doc: string, handle: DocHandle): void {
  const entry = { handle, statuses: [handle.status], errors: [] as string[] };
  handle.on('status', (status) => entry.statuses.push(status));
  handle.on('error', (err) => entry.errors.push(`${err.code}: ${err.message}`));
  docs.set(doc, entry);
}

function get(doc: string) {
  const entry = docs.get(doc);
  if (!entry) throw new Error(`"${doc}" is not open in this page`);
  return entry;
}

window.capsync = {
  async open(doc) {
    client ??= createClient({ url: `ws://${location.host}`, storage: 'indexeddb' });
    record(doc, await client.open(doc));
  },
  async openSubdoc(doc, guid) {
    const parent = get(doc).handle;
    const pages = parent.doc.getMap<Y.Doc>('pages');
    const sub = pages.get(guid) ?? new Y.Doc({ guid });
    if (!pages.has(guid)) pages.set(guid, sub);
    record(`${doc}#${guid}`, await parent.subdocs.get(sub));
  },
  append(doc, text) {
    const ytext = get(doc).handle.doc.getText('text');
    ytext.insert(ytext.length, text);
  },
  view(doc) {
    const { handle, statuses, errors } = get(doc);
    return { text: handle.doc.getText('text').toString(), status: handle.status, pending: handle.pending, statuses: [...statuses], errors: [...errors] };
  },
  async flush(doc, durability, timeoutMs) {
    await get(doc).handle.flush({ durability, timeoutMs });
  },
  async whenSynced(doc, timeoutMs) {
    await get(doc).handle.whenSynced({ timeoutMs });
  },
  async close(doc) {
    await get(doc).handle.close();
    docs.delete(doc);
  },
};
