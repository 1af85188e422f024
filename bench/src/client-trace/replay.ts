/**
 * Applying trace patches to a Y.Text. Isomorphic (no Node imports): the Node runners and the
 * Chromium page replay through these same functions.
 */
import type * as Y from 'yjs';

/** `[position, deleteCount, insertText]`, splice semantics (ascii traces: positions are string indices). */
export type Patch = [position: number, deleteCount: number, insert: string];

/** The shared text every replay writes to. */
export const TEXT_NAME = 'text';

/**
 * `compactAfterRows` of writing clients whose stored log is measured: threshold compaction
 * off, so the log can be measured before `compactLocal()`. Every other client setting is the default.
 */
export const NO_THRESHOLD_COMPACTION = Number.MAX_SAFE_INTEGER;

/** Applies one patch as one Yjs transaction, as an editor does for one keystroke or paste. */
export function applyPatch(doc: Y.Doc, text: Y.Text, patch: Patch): void {
  const [pos, del, ins] = patch;
  doc.transact(() => {
    if (del > 0) text.delete(pos, del);
    if (ins.length > 0) text.insert(pos, ins);
  });
}

/** Yields to the event loop: the next patch is typed in a new task (I/O, timers and the relay run in between). */
export type NextTask = () => Promise<void>;

/**
 * Microtask turns awaited after each patch before its time is taken, so work the client
 * defers to the end of the task (queueMicrotask: sending, events) is counted with the patch.
 */
const MICROTASK_TURNS = 4;

export interface TypingTime {
  /** Sum over the patches of the transaction plus the microtasks it queued (the main thread's cost of typing). */
  busyMs: number;
  /** First patch to the end of the last one, including everything that ran between the tasks. */
  wallMs: number;
}

/**
 * Types the patches: each one as one transaction in its own task, as fast as the event loop
 * allows, like a user whose every keystroke is one event.
 */
export async function typePatches(doc: Y.Doc, patches: readonly Patch[], nextTask: NextTask): Promise<TypingTime> {
  const text = doc.getText(TEXT_NAME);
  let busyMs = 0;
  const started = performance.now();
  for (const p of patches) {
    const t = performance.now();
    applyPatch(doc, text, p);
    for (let i = 0; i < MICROTASK_TURNS; i++) await null;
    busyMs += performance.now() - t;
    await nextTask();
  }
  return { busyMs, wallMs: performance.now() - started };
}

/** Applies every patch in one synchronous loop (a burst: one task); returns the elapsed milliseconds. */
export function burstPatches(doc: Y.Doc, patches: readonly Patch[]): number {
  const text = doc.getText(TEXT_NAME);
  const started = performance.now();
  for (const p of patches) applyPatch(doc, text, p);
  return performance.now() - started;
}

/**
 * Resolves with `performance.now()` at the first moment `doc`'s text equals `expected`
 * (checked after every transaction; the full comparison runs only once the lengths match).
 * Rejects after `timeoutMs`.
 */
export function whenTextEquals(doc: Y.Doc, expected: string, timeoutMs: number): Promise<number> {
  const text = doc.getText(TEXT_NAME);
  const matches = (): boolean => text.length === expected.length && text.toString() === expected;
  if (matches()) return Promise.resolve(performance.now());
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!matches()) return;
      done();
      resolve(performance.now());
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`text did not reach the expected ${expected.length} characters within ${timeoutMs} ms (has ${text.length})`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      doc.off('afterTransaction', check);
    };
    doc.on('afterTransaction', check);
  });
}
