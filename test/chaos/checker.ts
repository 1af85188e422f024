/**
 * The chaos run's checks, as pure functions of replica states (binary Yjs updates: a client's
 * `Y.encodeStateAsUpdate(doc)` or a relay's `GET /v1/docs/:name/update`):
 * - `compareReplicas`: every replica equals the merge of all of them (state vector, delete
 *   set, content of the schema's root types), so nobody holds something another lacks;
 * - `missingEdits`: which edits (by Yjs id: the items they inserted and the items they
 *   deleted) a replica lacks; run on the acknowledged edits, every answer must be empty.
 * No vitest here: the CLI uses it too.
 */
import * as Y from 'yjs';

export type RootKind = 'text' | 'map' | 'array';
export type Schema = Record<string, RootKind>;

export interface ReplicaState {
  name: string;
  update: Uint8Array;
}

/** One edit, identified by what it did to the Yjs store. */
export interface EditId {
  id: string;
  /** The Yjs clientID that made it and the clock range of the items it inserted ([start, end)). */
  client: number;
  start: number;
  end: number;
  /** Items it deleted, as [client, clock, length] ranges. */
  deletes: [number, number, number][];
}

export function docFromUpdate(update: Uint8Array): Y.Doc {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, update);
  return doc;
}

/** The state vector as sorted [client, clock] pairs. */
export function stateVectorOf(doc: Y.Doc): [number, number][] {
  return Array.from(Y.decodeStateVector(Y.encodeStateVector(doc))).sort(([a], [b]) => a - b);
}

/** Deep, comparable form of a root type (maps by sorted key, text as deltas). */
export function canonical(value: unknown): unknown {
  if (value instanceof Y.Text) return { text: value.toDelta() as unknown };
  if (value instanceof Y.Map) {
    const keys = Array.from(value.keys()).sort();
    return { map: keys.map((k) => [k, canonical(value.get(k))]) };
  }
  if (value instanceof Y.Array) return { array: value.toArray().map(canonical) };
  if (value instanceof Uint8Array) return { bytes: Array.from(value) };
  return value;
}

export function contentOf(doc: Y.Doc, schema: Schema): string {
  const content: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(schema).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const type = kind === 'text' ? doc.getText(name) : kind === 'map' ? doc.getMap(name) : doc.getArray(name);
    content[name] = canonical(type);
  }
  return JSON.stringify(content);
}

export interface Comparison {
  /** Names of the replicas that differ from the merge of all. */
  divergent: string[];
  /** One line per difference found. */
  details: string[];
  /** The merged state (every replica's content, deduplicated). */
  merged: Uint8Array;
}

export function compareReplicas(replicas: ReplicaState[], schema: Schema): Comparison {
  const merged = Y.mergeUpdates(replicas.map((r) => r.update));
  const reference = docFromUpdate(merged);
  const refSv = JSON.stringify(stateVectorOf(reference));
  const refSnapshot = Y.snapshot(reference);
  const refContent = contentOf(reference, schema);
  const divergent: string[] = [];
  const details: string[] = [];
  for (const r of replicas) {
    const doc = docFromUpdate(r.update);
    const problems: string[] = [];
    const sv = JSON.stringify(stateVectorOf(doc));
    if (sv !== refSv) problems.push(`state vector ${sv} != merged ${refSv}`);
    if (!Y.equalSnapshots(Y.snapshot(doc), refSnapshot)) problems.push('delete set differs');
    const content = contentOf(doc, schema);
    if (content !== refContent) problems.push(`content differs (${content.length} vs ${refContent.length} chars of JSON)`);
    if (problems.length > 0) {
      divergent.push(r.name);
      details.push(`${r.name}: ${problems.join('; ')}`);
    }
    doc.destroy();
  }
  reference.destroy();
  return { divergent, details, merged };
}

/** A replica loaded once, for many `missingEdits` questions. */
export class ReplicaIndex {
  private readonly ds: ReturnType<typeof Y.createDeleteSetFromStructStore>;

  /** Indexes `doc` as it is now (it must not change while in use). */
  constructor(
    readonly name: string,
    private readonly doc: Y.Doc,
  ) {
    this.ds = Y.createDeleteSetFromStructStore(this.doc.store);
  }

  static fromUpdate(name: string, update: Uint8Array): ReplicaIndex {
    return new ReplicaIndex(name, docFromUpdate(update));
  }

  /** Why `edit` is not (entirely) in this replica, or null when it is. */
  lacks(edit: EditId): string | null {
    if (edit.end > edit.start && Y.getState(this.doc.store, edit.client) < edit.end) {
      return `items ${edit.client}:${edit.start}..${edit.end - 1} missing (replica has clock ${Y.getState(this.doc.store, edit.client)})`;
    }
    for (const [client, clock, len] of edit.deletes) {
      for (let c = clock; c < clock + len; c++) {
        if (!Y.isDeleted(this.ds, Y.createID(client, c))) return `deletion of ${client}:${c} missing`;
      }
    }
    return null;
  }

  destroy(): void {
    this.doc.destroy();
  }
}

/** Every (replica, edit) pair where the replica lacks the edit. */
export function missingEdits(replicas: ReplicaState[], edits: EditId[]): { replica: string; edit: string; why: string }[] {
  const out: { replica: string; edit: string; why: string }[] = [];
  for (const r of replicas) {
    const index = ReplicaIndex.fromUpdate(r.name, r.update);
    for (const e of edits) {
      const why = index.lacks(e);
      if (why) out.push({ replica: r.name, edit: e.id, why });
    }
    index.destroy();
  }
  return out;
}

/** The edit a transaction made, from its before/after state and its delete set. */
export function editIdOf(id: string, tr: Y.Transaction): EditId {
  const client = tr.doc.clientID;
  const deletes: [number, number, number][] = [];
  for (const [c, items] of tr.deleteSet.clients) for (const item of items) deletes.push([c, item.clock, item.len]);
  return { id, client, start: tr.beforeState.get(client) ?? 0, end: tr.afterState.get(client) ?? 0, deletes };
}

export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
