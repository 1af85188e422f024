/**
 * Checks that Yjs replicas converged, as DESIGN.md defines it: equal state vectors and equal
 * encoded state after merging. Each replica is given as its full state update
 * (`Y.encodeStateAsUpdate(doc)`, or the relay's `GET /v1/docs/:name/update`), loaded into a
 * fresh doc and compared on:
 * - the state vector (decoded, so client order in the encoding does not matter);
 * - the delete set and state vector together (`Y.equalSnapshots`);
 * - the content of every root type named in `schema`, deeply, text as deltas (formatting too);
 * - the relay's JSON view (`docToJSON`), which also covers root types outside `schema`;
 * and each against the merge of all replicas, so nobody holds something another lacks.
 */
import { expect } from 'vitest';
import * as Y from 'yjs';
import { docToJSON } from '@capsync/core';

export type RootKind = 'text' | 'map' | 'array';
export type Schema = Record<string, RootKind>;

export interface Replica {
  name: string;
  update: Uint8Array;
}

export interface ReplicaDigest {
  stateVector: [number, number][];
  snapshot: Y.Snapshot;
  /** Stable JSON of the schema's root types (deep, text as deltas). */
  content: string;
  /** Stable JSON of `docToJSON` (every root type, kinds inferred as the relay does). */
  json: string;
}

export function docFromUpdate(update: Uint8Array): Y.Doc {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, update);
  return doc;
}

export function digest(update: Uint8Array, schema: Schema): ReplicaDigest {
  const inferred = docFromUpdate(update);
  const json = stableStringify(docToJSON(inferred));
  const doc = docFromUpdate(update);
  const content: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(schema)) {
    const type = kind === 'text' ? doc.getText(name) : kind === 'map' ? doc.getMap(name) : doc.getArray(name);
    content[name] = canonical(type);
  }
  const stateVector = Array.from(Y.decodeStateVector(Y.encodeStateVector(doc))).sort(([a], [b]) => a - b);
  return { stateVector, snapshot: Y.snapshot(doc), content: stableStringify(content), json };
}

/** Asserts that all replicas (at least two) hold the same state. */
export function expectConverged(replicas: Replica[], schema: Schema): void {
  expect(replicas.length).toBeGreaterThanOrEqual(2);
  const merged = digest(Y.mergeUpdates(replicas.map((r) => r.update)), schema);
  for (const r of replicas) {
    const d = digest(r.update, schema);
    expect(d.stateVector, `state vector of ${r.name}`).toEqual(merged.stateVector);
    expect(Y.equalSnapshots(d.snapshot, merged.snapshot), `delete set of ${r.name}`).toBe(true);
    expect(d.content, `content of ${r.name}`).toBe(merged.content);
    expect(d.json, `JSON view of ${r.name}`).toBe(merged.json);
  }
}

/** True when applying `update` to a copy of `doc` would change nothing (doc ⊇ update). */
export function contains(doc: Y.Doc, update: Uint8Array, schema: Schema): boolean {
  const current = Y.encodeStateAsUpdate(doc);
  const before = digest(current, schema);
  const after = digest(Y.mergeUpdates([current, update]), schema);
  return (
    stableStringify(before.stateVector) === stableStringify(after.stateVector) &&
    Y.equalSnapshots(before.snapshot, after.snapshot) &&
    before.content === after.content
  );
}

/** Deep, comparable form of a shared type or value: maps with sorted keys, text as deltas. */
export function canonical(value: unknown): unknown {
  if (value instanceof Y.Text) {
    return { text: value.toDelta().map((d: { insert: unknown; attributes?: unknown }) => ({ ...d, insert: canonical(d.insert) })) };
  }
  if (value instanceof Y.Map) {
    const keys = Array.from(value.keys()).sort();
    return { map: keys.map((k) => [k, canonical(value.get(k))]) };
  }
  if (value instanceof Y.Array) return { array: value.toArray().map(canonical) };
  if (value instanceof Uint8Array) return { bytes: Array.from(value) };
  return value;
}

export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)) {
      return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}
