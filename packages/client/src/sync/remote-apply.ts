import * as Y from 'yjs';

/** The handle's `update` listener: what the replica stores and the relay gets is decided there. */
export type UpdateListener = (update: Uint8Array, origin: unknown) => void;

/**
 * Applies an update from the relay and hands it to `listener` as received, instead of letting
 * Yjs re-encode it for the `update` event. Yjs encodes every transaction again for `update`
 * listeners; for a large first sync that is most of the work (a 10 MB document: ~35 ms to
 * apply, ~135 ms with an `update` listener on this machine), in one task that nothing else on
 * the page, or on the multiplexed socket, can interleave with.
 *
 * `listener` is detached from `doc` while the update applies, so a transaction made meanwhile
 * is caught here too: an observer that writes when a remote change comes (its transaction runs
 * in the same cleanup, inside `Y.applyUpdate`, after the relay's). Each is handed to `listener`
 * after the relay's update, with its own origin, as Yjs encodes it for its `update` event (a
 * recording `update` listener is attached once the first of them is cleaned up: the relay's
 * transaction has been emitted by then, so it is still not re-encoded). A transaction without
 * content (a subdocument loading, an empty `transact`) is handed on as nothing, as by Yjs.
 * Other `update` listeners of the app see every transaction as before (Yjs then encodes for
 * them anyway).
 *
 * Throws what `Y.applyUpdate` throws. It may throw having changed the document: an observer
 * of the app threw (Yjs applied the update whole, then rethrows), or the update's delete set is
 * malformed (Yjs integrates the structs before it reads it). What the relay's transaction
 * changed is then handed on (re-encoded, as Yjs's `update` event did), else the document shows
 * structs its replica lacks (gone on reload; local edits built on them wait for them).
 */
export function applyFromRelay(doc: Y.Doc, update: Uint8Array, origin: unknown, listener: UpdateListener): void {
  // Called inside a transaction, or while transactions are cleaned up, the update joins or
  // queues behind them and is emitted after this returns: the listener must stay attached.
  if (doc._transaction !== null || doc._transactionCleanups.length > 0) {
    Y.applyUpdate(doc, update, origin);
    return;
  }
  let relays: Y.Transaction | null = null;
  let recording = false;
  const madeMeanwhile: { update: Uint8Array; origin: unknown }[] = [];
  const record = (made: Uint8Array, madeOrigin: unknown, _doc: Y.Doc, tr: Y.Transaction): void => {
    if (tr !== relays) madeMeanwhile.push({ update: made, origin: madeOrigin });
  };
  // The first transaction that begins is Y.applyUpdate's (nothing else runs in between).
  const beforeTransaction = (tr: Y.Transaction): void => {
    relays ??= tr;
  };
  const beforeObserverCalls = (tr: Y.Transaction): void => {
    if (tr === relays || recording) return;
    recording = true;
    doc.on('update', record);
  };
  doc.off('update', listener);
  doc.on('beforeTransaction', beforeTransaction);
  doc.on('beforeObserverCalls', beforeObserverCalls);
  let applied = false;
  try {
    Y.applyUpdate(doc, update, origin);
    applied = true;
  } finally {
    doc.off('beforeTransaction', beforeTransaction);
    doc.off('beforeObserverCalls', beforeObserverCalls);
    if (recording) doc.off('update', record);
    doc.on('update', listener);
    if (applied) listener(update, origin);
    else if (relays !== null && changedAnything(relays)) {
      listener(Y.encodeStateAsUpdate(doc, Y.encodeStateVector((relays as Y.Transaction).beforeState)), origin);
    }
    for (const made of madeMeanwhile) listener(made.update, made.origin);
  }
}

function changedAnything(tr: Y.Transaction): boolean {
  if (tr.deleteSet.clients.size > 0) return true;
  for (const [client, clock] of tr.afterState) if ((tr.beforeState.get(client) ?? 0) !== clock) return true;
  return false;
}
