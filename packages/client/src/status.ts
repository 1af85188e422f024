import type { LinkState } from './sync/relay-link.js';

/**
 * The honest sync status of a document:
 * - 'offline': no connection to the relay (edits are saved locally and queued);
 * - 'connecting': a connection is being set up;
 * - 'syncing': connected, and either the first exchange with the relay is not finished or
 *   some local updates are not yet durable on the relay (`pending > 0`);
 * - 'synced': connected, caught up with the relay, and every local update is durable there.
 */
export type SyncStatus = 'offline' | 'connecting' | 'syncing' | 'synced';

export function syncStatus(link: LinkState, caughtUp: boolean, pending: number): SyncStatus {
  if (link === 'offline') return 'offline';
  if (link === 'connecting') return 'connecting';
  return caughtUp && pending === 0 ? 'synced' : 'syncing';
}
