/** Seeded document contents of the mux benchmark, and what every client needs to reach them. */
import * as Y from 'yjs';
import { prng } from '../convergence/edits.js';

export const TEXT = 't';
const WORDS = ['sync', 'relay', 'note', 'draft', 'offline', 'merge', 'socket', 'yjs', 'session', 'todo', 'idea', 'list'];

/** A small document's text: a few hundred characters of words, different for every name. */
export function smallText(seed: number, index: number): string {
  const random = prng(seed * 100_003 + index);
  const words: string[] = [];
  const n = 40 + Math.floor(random() * 60);
  for (let i = 0; i < n; i++) words.push(WORDS[Math.floor(random() * WORDS.length)]!);
  return `note ${index}: ${words.join(' ')}`;
}

/** `bytes` characters of seeded words, written into `doc` in 16 KB inserts (one transaction). */
export function fillLarge(doc: Y.Doc, seed: number, bytes: number): void {
  const random = prng(seed);
  const text = doc.getText(TEXT);
  doc.transact(() => {
    let written = 0;
    while (written < bytes) {
      const parts: string[] = [];
      let len = 0;
      while (len < 16_384) {
        const w = WORDS[Math.floor(random() * WORDS.length)]!;
        parts.push(w);
        len += w.length + 1;
      }
      const chunk = parts.join(' ').slice(0, Math.min(16_384, bytes - written));
      text.insert(text.length, chunk);
      written += chunk.length;
    }
  });
}
