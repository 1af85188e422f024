/** The targets the client-trace results are judged by (from the issue). */
export const TARGETS = {
  /** capsync client local replay time at most this multiple of plain Yjs doing the same edits and encoding updates. */
  overheadRatio: 1.15,
  /** Cold open of the finished automerge-paper document from IndexedDB in Chromium, milliseconds. */
  coldOpenMs: 50,
  /** Stored size after compaction at most this multiple of Y.encodeStateAsUpdateV2(doc). */
  storedVsV2: 1.2,
};
