/**
 * Answers kept for a while, at most `max` of them, the least recently used forgotten first
 * (`--auth-webhook` answers per token and document). An entry is never served past its `until`:
 * it is dropped when met, and so is every expired entry at the least recently used end whenever
 * one is added, so expired entries do not crowd out live ones for long. Memory: at most `max`
 * entries, each a key (a token hash and a document name) and an answer.
 */
export class AnswerCache<A> {
  /** In order of use: the least recently used first. */
  private readonly entries = new Map<string, { answer: A; until: number }>();

  constructor(readonly max: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The answer kept for `key`, if still good (it becomes the most recently used). */
  get(key: string, now = Date.now()): A | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    this.entries.delete(key);
    if (hit.until <= now) return undefined;
    this.entries.set(key, hit);
    return hit.answer;
  }

  /** Keeps `answer` until `until` (ms since epoch); one already past it is not kept. */
  set(key: string, answer: A, until: number, now = Date.now()): void {
    this.entries.delete(key);
    if (until <= now || this.max <= 0) return;
    this.entries.set(key, { answer, until });
    for (const [k, e] of this.entries) {
      if (this.entries.size <= this.max && e.until > now) break;
      this.entries.delete(k);
    }
  }
}
