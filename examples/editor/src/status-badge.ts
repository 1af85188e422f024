/**
 * The save badge. It tells the truth about durability: "all changes saved" only when the client
 * says every local edit is durable on the relay ('synced'), never merely because a socket is open.
 */

import type { SyncStatus } from '@capsync/client';

const LABELS: Record<SyncStatus, string> = {
  offline: 'offline',
  connecting: 'connecting…',
  syncing: 'syncing…',
  synced: 'all changes saved',
};

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export interface StatusBadge {
  setStatus(status: SyncStatus): void;
  setPending(pending: number): void;
  /** False when the browser refused local storage (private mode, quota): pending changes then live only in memory. */
  setSavingLocally(saving: boolean): void;
  showError(err: unknown): void;
}

export function createStatusBadge(badge: HTMLElement, errorLine: HTMLElement): StatusBadge {
  let status: SyncStatus = 'connecting';
  let pending = 0;
  let savingLocally = true;

  function render(): void {
    // Never "all changes saved" while something is pending, even if an event ordering briefly
    // says 'synced' before the new count arrives.
    const shown: SyncStatus = pending > 0 && status === 'synced' ? 'syncing' : status;
    // With changes pending, lead with the count ("syncing · 3 unsaved changes"): it is the number
    // a user cares about before closing the laptop.
    badge.textContent = pending > 0 ? `${LABELS[shown].replace('…', '')} · ${plural(pending, 'unsaved change')}` : LABELS[shown];
    badge.dataset.status = shown;
    badge.title = explain(shown);
  }

  function explain(shown: SyncStatus): string {
    if (pending > 0) {
      const where = savingLocally
        ? 'kept in this browser (IndexedDB)'
        : 'held in memory only, as this browser refused to store them: closing the page now loses them';
      return `${plural(pending, 'change')} ${where}, not yet durable on the relay; they go out as soon as it is reachable.`;
    }
    if (shown === 'synced') return 'Every change is durable on the relay.';
    if (shown === 'offline') return 'Not connected to the relay. Editing works; changes are kept until it is reachable.';
    return 'Catching up with the relay.';
  }

  function showError(err: unknown): void {
    // A failed local save or a refused update must not go unnoticed: the badge alone would look
    // fine while a change is at risk.
    const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : 'error';
    const message = err instanceof Error ? err.message : String(err);
    errorLine.textContent = message.startsWith(code) ? message : `${code}: ${message}`;
    errorLine.hidden = false;
  }

  errorLine.addEventListener('click', () => (errorLine.hidden = true));
  render();
  return {
    setStatus(next) {
      status = next;
      render();
    },
    setPending(next) {
      pending = next;
      render();
    },
    setSavingLocally(next) {
      savingLocally = next;
      render();
    },
    showError,
  };
}
