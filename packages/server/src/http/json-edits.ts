import * as Y from 'yjs';
import { CapsyncError, LimitExceededError, newDoc, sharedTypeKind } from '@capsync/core';

/**
 * `PATCH /v1/docs/:name` (issue 14): JSON edits to a document's top-level maps and texts, for
 * backends in languages without Yjs. The body:
 *
 *   { "edits": [
 *       { "map": "meta", "set": { "title": "Q3 plan", "tags": ["a"] } },
 *       { "map": "meta", "delete": ["draft"] },
 *       { "text": "body", "insert": "Summary\n", "at": 0 },
 *       { "text": "body", "delete": 3, "at": 10 },
 *       { "text": "body", "append": "\n-- the indexer" } ] }
 *
 * applied in order, in one transaction, as one update that enters the document like a client's
 * (validated, owned by the token's `sub`, committed before the answer). Refused as a whole,
 * having changed nothing:
 * - a text position past the text's end, a malformed edit or more than MAX_JSON_EDITS edits:
 *   400 bad-message;
 * - a value nested deeper than `--max-json-depth` (the depth GET renders: the map is depth 1,
 *   each object or array inside adds one): 422 too-deep, checked without recursion;
 * - an edit of a top-level name that holds another kind of type (a map edit of a Y.Text, a
 *   text edit of a Y.Map or Y.Array): 409 conflict. Yjs would otherwise write map entries into
 *   the text (or text into the map), which the document's clients never see;
 * - a document whose state is over `--max-patch-doc-bytes`: 429 limit-exceeded. Each PATCH
 *   builds its update on a copy of the document (its encoded state decoded into a scratch
 *   Y.Doc: CPU and memory of the document's size, then freed), so that cap is what one PATCH
 *   costs at most, besides its body (`--max-message-bytes`).
 */
export const MAX_JSON_EDITS = 1_000;

export type JsonEdit =
  | { map: string; set: Record<string, unknown> }
  | { map: string; delete: string[] }
  | { text: string; insert: string; at: number }
  | { text: string; delete: number; at: number }
  | { text: string; append: string };

/** The edits of a PATCH body, checked; throws CapsyncError 'bad-message' saying what is wrong. */
export function parseJsonEdits(body: unknown, maxDepth: number): JsonEdit[] {
  const edits = (body as { edits?: unknown } | null)?.edits;
  if (!Array.isArray(edits) || edits.length === 0) throw bad('the body must be {"edits": [...]} with at least one edit');
  if (edits.length > MAX_JSON_EDITS) throw bad(`at most ${MAX_JSON_EDITS} edits per request, got ${edits.length}`);
  return edits.map((e: unknown, i) => {
    const edit = e as Record<string, unknown>;
    if (typeof edit !== 'object' || edit === null) throw bad(`edit ${i}: not an object`);
    if (typeof edit['map'] === 'string') {
      const set = edit['set'];
      if (set !== undefined && typeof set === 'object' && set !== null && !Array.isArray(set) && Object.keys(edit).length === 2) {
        refuseDeeperThan(set, maxDepth, i);
        return { map: edit['map'], set: set as Record<string, unknown> };
      }
      const del = edit['delete'];
      if (Array.isArray(del) && del.every((k) => typeof k === 'string') && Object.keys(edit).length === 2) return { map: edit['map'], delete: del as string[] };
      throw bad(`edit ${i}: a map edit is {"map", "set": {...}} or {"map", "delete": [keys]}`);
    }
    if (typeof edit['text'] === 'string') {
      const at = edit['at'];
      const keys = Object.keys(edit).length;
      if (typeof edit['append'] === 'string' && keys === 2) return { text: edit['text'], append: edit['append'] };
      if (typeof at === 'number' && Number.isSafeInteger(at) && at >= 0 && keys === 3) {
        if (typeof edit['insert'] === 'string') return { text: edit['text'], insert: edit['insert'], at };
        const n = edit['delete'];
        if (typeof n === 'number' && Number.isSafeInteger(n) && n > 0) return { text: edit['text'], delete: n, at };
      }
      throw bad(`edit ${i}: a text edit is {"text", "insert", "at"}, {"text", "delete": n, "at"} or {"text", "append"}`);
    }
    throw bad(`edit ${i}: names neither a "map" nor a "text"`);
  });
}

/**
 * The update that makes `edits` on a replica of the document's `state` (a scratch Y.Doc: the
 * relay's own document only changes through `receive`). Throws 'bad-message' for a position
 * past a text's end; null when the edits change nothing.
 */
export function updateOfJsonEdits(state: Uint8Array, edits: JsonEdit[], clientId: number, maxDocBytes: number): Uint8Array | null {
  if (state.byteLength > maxDocBytes) {
    throw new LimitExceededError('max-patch-doc-bytes', `--max-patch-doc-bytes: the document is ${state.byteLength} bytes (PATCH edits documents of at most ${maxDocBytes}; write through a client or openDocument)`);
  }
  const doc = newDoc();
  try {
    Y.applyUpdate(doc, state);
    // After the apply: Yjs picks a fresh id when an update carries the doc's own. The replica
    // holds the whole state, so this id's clock goes on from what it wrote before.
    doc.clientID = clientId;
    let update: Uint8Array | null = null;
    doc.on('update', (u: Uint8Array) => (update = u));
    doc.transact(() => {
      edits.forEach((edit, i) => {
        refuseOtherKind(doc, 'map' in edit ? edit.map : edit.text, 'map' in edit ? 'map' : 'text', i);
        if ('map' in edit) {
          const map = doc.getMap(edit.map);
          if ('set' in edit) for (const [k, v] of Object.entries(edit.set)) map.set(k, v);
          else for (const k of edit.delete) map.delete(k);
          return;
        }
        const text = doc.getText(edit.text);
        if ('append' in edit) return text.insert(text.length, edit.append);
        if (edit.at > text.length) throw bad(`edit ${i}: position ${edit.at} is past the end of "${edit.text}" (${text.length})`);
        if ('insert' in edit) text.insert(edit.at, edit.insert);
        else text.delete(edit.at, Math.min(edit.delete, text.length - edit.at));
      });
    });
    return update;
  } catch (err) {
    if (err instanceof CapsyncError) throw err;
    // Yjs: a name used as a map and as a text, or a value it cannot store.
    throw bad(`the edits cannot be applied: ${(err as Error).message}`);
  } finally {
    doc.destroy();
  }
}

/** Writers kept at most (the least recently used forgotten first: its next PATCH takes a new id). */
const MAX_PATCH_WRITERS = 10_000;

/**
 * The Yjs client id each PATCH writer (an identity, or an address on an open relay) writes a
 * document under on this relay: one, reused, so a backend that PATCHes a document again and
 * again owns one client id there, not one per request (which would run into
 * --max-clients-per-identity and grow the state vector by an entry per request). Random per
 * relay process, never derived from the name: two relays of a cluster writing under one id at
 * the same clock would make different structs at the same id (PATCHes on one relay are built
 * and applied synchronously, so they never race each other).
 */
export class PatchWriters {
  private readonly ids = new Map<string, number>();

  clientIdFor(docName: string, writer: string): number {
    const key = `${docName}\0${writer}`;
    let id = this.ids.get(key);
    if (id === undefined) id = newDoc().clientID;
    this.ids.delete(key); // re-inserted: most recently used last
    this.ids.set(key, id);
    if (this.ids.size > MAX_PATCH_WRITERS) this.ids.delete(this.ids.keys().next().value!);
    return id;
  }

  /** The relay refused a write under it (another identity owns it): the next PATCH takes a new one. */
  forget(docName: string, writer: string): void {
    this.ids.delete(`${docName}\0${writer}`);
  }
}

/**
 * Refuses (409 conflict) an edit of top-level `name` as a `want` when it holds another kind:
 * Yjs turns a bare type into whatever it is first asked for, so a map edit of a text would
 * write map entries its clients never read. An empty name (nothing visible) takes either.
 */
function refuseOtherKind(doc: Y.Doc, name: string, want: 'map' | 'text', i: number): void {
  const type = doc.share.get(name);
  const kind = type === undefined ? 'empty' : sharedTypeKind(type);
  if (kind !== 'empty' && kind !== want) throw new CapsyncError('conflict', `edit ${i}: "${name}" holds a ${kind}, not a ${want}`);
}

/** Refuses (422 too-deep) a value of map edit `i` nested past `maxDepth`, walked with a stack. */
function refuseDeeperThan(set: object, maxDepth: number, i: number): void {
  // The map is depth 1, `set` itself stands for it: its values start at depth 2.
  const pending: [value: unknown, depth: number][] = Object.values(set).map((v) => [v, 2]);
  while (pending.length > 0) {
    const [value, depth] = pending.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth > maxDepth) throw new CapsyncError('too-deep', `edit ${i}: a value nested deeper than ${maxDepth} (--max-json-depth)`);
    for (const v of Object.values(value)) pending.push([v, depth + 1]);
  }
}

function bad(message: string): CapsyncError {
  return new CapsyncError('bad-message', message);
}
