/**
 * A tiny full-text index: which documents contain which words. Enough to show what a backend
 * does with `document.changed`; a real one would feed Elasticsearch, Meilisearch or Postgres FTS.
 */
export class SearchIndex {
  private readonly words = new Map<string, Set<string>>();
  private readonly byDoc = new Map<string, Set<string>>();

  /** Replaces what is indexed for `docName` with the words of every string in `json`. */
  put(docName: string, json: unknown): void {
    this.remove(docName);
    const words = new Set(stringsOf(json).flatMap(tokens));
    this.byDoc.set(docName, words);
    for (const w of words) {
      let docs = this.words.get(w);
      if (!docs) this.words.set(w, (docs = new Set()));
      docs.add(docName);
    }
  }

  remove(docName: string): void {
    for (const w of this.byDoc.get(docName) ?? []) {
      const docs = this.words.get(w)!;
      docs.delete(docName);
      if (docs.size === 0) this.words.delete(w);
    }
    this.byDoc.delete(docName);
  }

  /** Documents containing every word of `query`, sorted. */
  search(query: string): string[] {
    const [first, ...rest] = tokens(query).map((w) => this.words.get(w) ?? new Set<string>());
    if (!first) return [];
    return [...first].filter((d) => rest.every((s) => s.has(d))).sort();
  }
}

function tokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** Every string in a JSON value (texts, map values, array items), without recursion limits of the call stack. */
function stringsOf(json: unknown): string[] {
  const out: string[] = [];
  const stack = [json];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) stack.push(...v);
    else if (v && typeof v === 'object') stack.push(...Object.values(v));
  }
  return out;
}
