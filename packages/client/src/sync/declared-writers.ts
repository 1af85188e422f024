import { MAX_DECLARED_WRITERS, WRITES_PREFIX } from '@capsync/core';

/**
 * The `writes:<id>` capabilities of a document connection's hello: the Yjs client ids this
 * connection may upload edits under, own id first, then `others` in the order given (the
 * outbox's ids, latest first, then other tabs'), at most MAX_DECLARED_WRITERS (what a relay
 * reads).
 *
 * Why all of them: a relay with auth claims for the user only the ids a hello declares.
 * Edits under an undeclared id are carried, not claimed (they may be another user's), so the
 * first sync step 2 of this connection, which uploads everything pending in the shared
 * replica (an earlier page load's offline edits, another tab's), would leave those ids owned
 * by nobody: anyone who reads one from the document could write at its next clock first, own
 * it, and the tab still writing under it would be refused `not-owner` for good.
 */
export function declaredWriters(own: number, ...others: number[][]): string[] {
  // Most connections have nothing pending: their own id only (no Set per document opened).
  if (others.every((list) => list.length === 0)) return [WRITES_PREFIX + own];
  const ids = new Set<number>([own]);
  for (const list of others) {
    for (const id of list) {
      if (ids.size >= MAX_DECLARED_WRITERS) break;
      ids.add(id);
    }
  }
  return Array.from(ids, (id) => WRITES_PREFIX + id);
}
