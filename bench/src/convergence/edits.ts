/**
 * The edits of the convergence benchmark, generated once per run and reused by every
 * repetition (each repetition uses a fresh document, so the same updates apply again).
 *
 * Each update is one Yjs transaction of one client: the insert of a short word at a
 * pseudo-random position of the shared Y.Text `t`. Random positions keep the inserts from
 * merging into one long item (consecutive typing at one place would), so N updates are N
 * structs in the document and in the minimal diff: the diff grows with N, as the benchmark
 * needs. Inserts only: Yjs sends a document's whole delete set in every sync step 2, so
 * deletions in the history would make the diff itself grow with the history.
 */
import * as Y from 'yjs';

/** Client IDs: one for the shared history, one for each relay's divergent edits. */
export const HISTORY_CLIENT = 7;
export const CLIENT_A = 1_001;
export const CLIENT_B = 2_002;

export interface EditBatch {
  /** One Yjs update (V1) per edit, in order. */
  updates: Uint8Array[];
  /** Sum of the updates' sizes. */
  bytes: number;
  /** The state the edits start from plus all of them (for the next batch to build on). */
  state: Uint8Array;
  /** Time it took to generate them, ms. */
  generateMs: number;
}

/** Share of edits that jump to a random position; the others move the cursor by 1..MAX_STEP characters. */
const JUMP_PROBABILITY = 0.05;
const MAX_STEP = 40;

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `n` single-insert updates of client `clientId`, made on top of `base` (a full state update,
 * or null for an empty document).
 */
export function generateEdits(clientId: number, n: number, base: Uint8Array | null, seed: number): EditBatch {
  const started = performance.now();
  const doc = new Y.Doc();
  doc.clientID = clientId;
  if (base) Y.applyUpdate(doc, base);
  const text = doc.getText('t');
  const updates: Uint8Array[] = new Array<Uint8Array>(n);
  let bytes = 0;
  let last: Uint8Array | null = null;
  const onUpdate = (u: Uint8Array): void => {
    last = u;
  };
  doc.on('update', onUpdate);
  const random = prng(seed);
  let pos = 0;
  for (let i = 0; i < n; i++) {
    // Like an editor's cursor: mostly a little further on from the last edit (at least one
    // character on, so the insert is a new item), sometimes a jump anywhere.
    const length = text.length;
    pos = random() < JUMP_PROBABILITY ? Math.floor(random() * (length + 1)) : pos + 1 + Math.floor(random() * MAX_STEP);
    if (pos > length) pos = Math.floor(random() * (length + 1));
    const word = `${clientId % 100}w${i} `;
    text.insert(pos, word);
    pos += word.length;
    const u = last!;
    last = null;
    updates[i] = u;
    bytes += u.byteLength;
  }
  doc.off('update', onUpdate);
  const state = Y.encodeStateAsUpdate(doc);
  doc.destroy();
  return { updates, bytes, state, generateMs: performance.now() - started };
}
