/**
 * Entry point: opens the document named by the URL through capsync and wires the editor,
 * the save badge, presence and the offline toggle to it.
 */
import { createClient } from '@capsync/client';
import { createEditor } from './editor';
import { docNameFromLocation, relayUrlFromLocation } from './location';
import { bindOfflineToggle, startsOffline } from './offline-toggle';
import { bindPresence, localUser } from './presence';
import { createStatusBadge } from './status-badge';

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id} in index.html`);
  return el as T;
}

async function main(): Promise<void> {
  const docName = docNameFromLocation();
  document.title = `${docName} · capsync editor`;
  element('doc-name').textContent = docName;

  const badge = createStatusBadge(element('status'), element('error'));
  const client = createClient({ url: relayUrlFromLocation(), storage: 'indexeddb', connect: !startsOffline() });
  // Resolves once the IndexedDB replica is loaded, before any network: the editor shows the
  // last local state immediately, online or not.
  const handle = await client.open(docName);

  handle.on('status', badge.setStatus);
  handle.on('pending', badge.setPending);
  handle.on('error', (err) => {
    badge.showError(err);
    // A storage failure is reported as an error; the handle then keeps working in memory.
    badge.setSavingLocally(handle.savingLocally);
  });
  badge.setStatus(handle.status);
  badge.setPending(handle.pending);
  badge.setSavingLocally(handle.savingLocally);

  createEditor(element('editor'), handle.doc.getText('content'), handle.awareness);
  bindPresence(handle.awareness, localUser(), element('user-name'), element('presence'));
  bindOfflineToggle(element('offline'), handle, badge.showError);

  // Another document is another replica; a fresh page is the simplest correct switch.
  window.addEventListener('hashchange', () => location.reload());
  // Leaving: close() clears our presence at once (no cursor lingering until awareness times
  // out) and saves what is queued. A page restored from the back/forward cache then has a
  // closed handle, so it starts over.
  window.addEventListener('pagehide', () => void handle.close());
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) location.reload();
  });
}

main().catch((err: unknown) => {
  const errorLine = document.getElementById('error');
  if (errorLine) {
    errorLine.textContent = `could not open the document: ${err instanceof Error ? err.message : String(err)}`;
    errorLine.hidden = false;
  }
  console.error(err);
});
