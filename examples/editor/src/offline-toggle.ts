/**
 * "Work offline": cuts this tab's connection to the relay on purpose, so a demo can show edits
 * piling up locally (the pending count rises), surviving a reload, and merging when back online.
 *
 * The choice is kept per tab in sessionStorage so a reload stays offline: the page then opens
 * from IndexedDB alone, which is the offline-first claim worth demonstrating.
 */

const STORAGE_KEY = 'capsync-editor-offline';

export interface Connectable {
  disconnect(): void;
  connect(): void;
}

/** Whether this tab was left offline; read before opening so it never connects at all. */
export function startsOffline(): boolean {
  try {
    return sessionStorage.getItem(STORAGE_KEY) === '1';
  } catch {
    return false;
  }
}

function remember(offline: boolean): void {
  try {
    if (offline) sessionStorage.setItem(STORAGE_KEY, '1');
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Without storage the toggle still works; it just will not survive a reload.
  }
}

export function bindOfflineToggle(checkbox: HTMLInputElement, target: Connectable, onError: (err: unknown) => void): void {
  checkbox.checked = startsOffline();
  checkbox.addEventListener('change', () => {
    const offline = checkbox.checked;
    try {
      if (offline) target.disconnect();
      else target.connect();
      remember(offline);
    } catch (err) {
      checkbox.checked = !offline;
      onError(err);
    }
  });
}
