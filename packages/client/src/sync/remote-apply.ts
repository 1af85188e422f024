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
 * in the same cleanup, inside `Y.applyUpdate`). Each is handed to `listener` after the relay's
 * update, with its own origin, as the update since its before-state (its structs, and the
 * document's whole delete set: a superset of its deletions, which a receiver that has them
 * ignores). Other `update` listeners of the app see every transaction as before (Yjs then
 * encodes for them anyway).
 *
 * Throws what `Y.applyUpdate` throws (then the relay's update is not handed on: nothing of
 * bytes Yjs refused is stored).
 */
export function applyFromRelay(doc: Y.Doc, update: Uint8Array, origin: unknown, listener: UpdateListener): void {
  const madeMeanwhile: { update: Uint8Array; origin: unknown }[] = [];
  const afterTransaction = (tr: Y.Transaction): void => {
    if (tr.origin === origin) return;
    madeMeanwhile.push({ update: Y.encodeStateAsUpdate(doc, Y.encodeStateVector(tr.beforeState)), origin: tr.origin });
  };
  doc.off('update', listener);
  doc.on('afterTransaction', afterTransaction);
  let applied = false;
  try {
    Y.applyUpdate(doc, update, origin);
    applied = true;
  } finally {
    doc.off('afterTransaction', afterTransaction);
    doc.on('update', listener);
    if (applied) listener(update, origin);
    for (const made of madeMeanwhile) listener(made.update, made.origin);
  }
}
