/**
 * Loading the editing traces (gzipped JSON, format in traces/ATTRIBUTION.md). The bench uses
 * the copies next to this file, so it runs on a fresh clone; a missing or malformed trace is
 * an error, never a silent skip.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import type { Patch } from './replay.js';

export const TRACES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'traces');

export interface SequentialTrace {
  name: string;
  /** Every patch of every transaction, in order. */
  patches: Patch[];
  /** The text after all patches (for a prefix: unknown until replayed, see `prefixOf`). */
  endContent: string | null;
}

export interface ConcurrentTxn {
  agent: number;
  /** Indices of earlier transactions this one causally follows. */
  parents: number[];
  patches: Patch[];
}

export interface ConcurrentTrace {
  name: string;
  numAgents: number;
  txns: ConcurrentTxn[];
  endContent: string;
}

function readJson(name: string, dir: string): unknown {
  const file = path.join(dir, `${name}.json.gz`);
  if (!fs.existsSync(file)) {
    throw new Error(`editing trace ${file} is missing (the bench carries copies of the traces it replays; see traces/ATTRIBUTION.md)`);
  }
  return JSON.parse(gunzipSync(fs.readFileSync(file)).toString('utf8'));
}

function isPatch(p: unknown): p is Patch {
  return Array.isArray(p) && p.length === 3 && Number.isInteger(p[0]) && Number.isInteger(p[1]) && typeof p[2] === 'string';
}

function checkPatches(name: string, patches: unknown): Patch[] {
  if (!Array.isArray(patches) || !patches.every(isPatch)) throw new Error(`trace ${name}: malformed patches`);
  return patches;
}

export function loadSequential(name: string, dir = TRACES_DIR): SequentialTrace {
  const json = readJson(name, dir) as { startContent?: unknown; endContent?: unknown; txns?: unknown };
  if (typeof json.endContent !== 'string' || !Array.isArray(json.txns)) throw new Error(`trace ${name}: not a sequential trace`);
  if (json.startContent !== undefined && json.startContent !== '') throw new Error(`trace ${name}: a non-empty startContent is not supported`);
  const patches: Patch[] = [];
  for (const txn of json.txns as { patches?: unknown }[]) patches.push(...checkPatches(name, txn.patches));
  return { name, patches, endContent: json.endContent };
}

export function loadConcurrent(name: string, dir = TRACES_DIR): ConcurrentTrace {
  const json = readJson(name, dir) as { kind?: unknown; endContent?: unknown; numAgents?: unknown; txns?: unknown };
  if (json.kind !== 'concurrent' || typeof json.endContent !== 'string' || typeof json.numAgents !== 'number' || !Array.isArray(json.txns)) {
    throw new Error(`trace ${name}: not a concurrent trace`);
  }
  const numAgents = json.numAgents;
  const txns = (json.txns as { agent?: unknown; parents?: unknown; patches?: unknown }[]).map((t, i): ConcurrentTxn => {
    const { agent, parents } = t;
    if (typeof agent !== 'number' || agent < 0 || agent >= numAgents) throw new Error(`trace ${name}: transaction ${i} has a bad agent`);
    if (!Array.isArray(parents) || !parents.every((p) => Number.isInteger(p) && p >= 0 && p < i)) {
      throw new Error(`trace ${name}: transaction ${i} has parents that are not earlier transactions`);
    }
    return { agent, parents: parents as number[], patches: checkPatches(name, t.patches) };
  });
  return { name, numAgents, txns, endContent: json.endContent };
}

/** The first `count` patches (quick runs); its end content comes from replaying it. */
export function prefixOf(trace: SequentialTrace, count: number): SequentialTrace {
  if (count >= trace.patches.length) return trace;
  return { name: trace.name, patches: trace.patches.slice(0, count), endContent: null };
}
