/**
 * The baseline: the same patches through bare Yjs, no client, no network, typed the same way
 * (one transaction per task, see `typePatches`).
 *
 * - `edit`: every patch on doc A, with an 'update' listener that keeps each V1 update (so Yjs
 *   encodes one update per transaction, as any provider makes it do).
 * - `ship`: the same, but the listener applies every update to a second bare doc B at once
 *   (Y.applyUpdate), i.e. editing plus in-process "shipping".
 */
import * as Y from 'yjs';
import { TEXT_NAME, burstPatches, typePatches, type NextTask, type Patch, type TypingTime } from './replay.js';

export interface PlainYjsRun {
  edit: TypingTime;
  ship: TypingTime;
  updates: number;
  /** Sum of the V1 updates' sizes, one per transaction. */
  updateBytes: number;
}

export interface PlainYjsFinal {
  text: string;
  /** Y.encodeStateAsUpdate(final doc).byteLength */
  updateV1Bytes: number;
  /** Y.encodeStateAsUpdateV2(final doc).byteLength */
  updateV2Bytes: number;
}

export async function runPlainYjs(patches: readonly Patch[], nextTask: NextTask): Promise<PlainYjsRun & { final: PlainYjsFinal }> {
  const a = new Y.Doc();
  let updates = 0;
  let updateBytes = 0;
  const kept: Uint8Array[] = [];
  a.on('update', (u: Uint8Array) => {
    kept.push(u);
    updates++;
    updateBytes += u.byteLength;
  });
  const edit = await typePatches(a, patches, nextTask);
  kept.length = 0;

  const src = new Y.Doc();
  const dst = new Y.Doc();
  src.on('update', (u: Uint8Array) => Y.applyUpdate(dst, u));
  const ship = await typePatches(src, patches, nextTask);

  const text = a.getText(TEXT_NAME).toString();
  if (dst.getText(TEXT_NAME).toString() !== text) throw new Error('plain Yjs: the receiving doc diverged from the sender');
  const final = { text, updateV1Bytes: Y.encodeStateAsUpdate(a).byteLength, updateV2Bytes: Y.encodeStateAsUpdateV2(a).byteLength };
  for (const d of [a, src, dst]) d.destroy();
  return { edit, ship, updates, updateBytes, final };
}

/** The patches in one synchronous loop on a bare doc with an update listener (the burst baseline). */
export function plainBurst(patches: readonly Patch[]): { ms: number; text: string } {
  const doc = new Y.Doc();
  const kept: Uint8Array[] = [];
  doc.on('update', (u: Uint8Array) => kept.push(u));
  const ms = burstPatches(doc, patches);
  const text = doc.getText(TEXT_NAME).toString();
  doc.destroy();
  return { ms, text };
}
