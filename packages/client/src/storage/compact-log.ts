import * as Y from 'yjs';
import { newDoc } from '@capsync/core';
import { logSize, type StoredUpdate } from './storage-adapter.js';

/**
 * Merges a replica's log into one V2 snapshot by loading it into a scratch document, so
 * deleted content is garbage-collected and the result is as small as Yjs encodes it.
 * Returns null when that would not make the log smaller (a replica must never grow by
 * being compacted) or when the log cannot be loaded (rows are then kept as they are).
 */
export function compactLog(log: StoredUpdate[]): StoredUpdate | null {
  if (log.length <= 1) return null;
  const scratch = newDoc();
  try {
    scratch.transact(() => {
      for (const row of log) applyStored(scratch, row);
    });
    const merged: StoredUpdate = { data: Y.encodeStateAsUpdateV2(scratch), format: 'v2' };
    return merged.data.byteLength < logSize(log).bytes ? merged : null;
  } catch {
    return null;
  } finally {
    scratch.destroy();
  }
}

/** Applies one stored row in its own format. */
export function applyStored(doc: Y.Doc, row: StoredUpdate, origin?: unknown): void {
  if (row.format === 'v2') Y.applyUpdateV2(doc, row.data, origin);
  else Y.applyUpdate(doc, row.data, origin);
}
