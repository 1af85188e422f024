/**
 * A sequential trace through capsync clients in Node: client A types it (one Y.Text
 * transaction per patch, each in its own task), the in-process relay fans it out, client B
 * receives it. Storage 'memory', or 'indexeddb' through fake-indexeddb (one IDBFactory per
 * client, like two browser profiles); with IndexedDB also the stored size around compaction and
 * cold opens. Also: the client alone (offline, or connected without waiting for the relay) for
 * the overhead comparison, and bursts (many patches in one task).
 */
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { WebSocket } from 'ws';
import * as Y from 'yjs';
import { IndexedDbStorage, createClient, type ClientOptions, type DocHandle, type ReplicaSize, type WebSocketConstructor } from '@capsync/client';
import type { BenchRelay } from './relay.js';
import { NO_THRESHOLD_COMPACTION, TEXT_NAME, burstPatches, typePatches, whenTextEquals, type Patch, type TypingTime } from './replay.js';
import { countingWebSocket, diffCounts, emptyCounts, snapshotCounts, type WireCounts } from './wire-count.js';

export type ClientStorage = 'memory' | 'indexeddb';

const NodeWebSocket = WebSocket as unknown as WebSocketConstructor;

/** The next patch in a new task: after I/O (the relay, acks) has had its turn. */
export const nodeNextTask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A full GC between measurements when node runs with --expose-gc (the bench script passes it). */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export interface LocalStorageResult {
  /** A's stored log once everything is saved locally, before compaction. */
  before: ReplicaSize;
  /** After handle.compactLocal(). */
  after: ReplicaSize;
  compactMs: number;
  /** t0 to flush({ durability: 'local' }) resolved. */
  localSavedMs: number;
  /** client.open(name) on a new client over the same IndexedDB, until loaded. */
  coldOpenMs: number[];
}

export interface SequentialRun {
  /** A typing the trace. */
  replay: TypingTime;
  /** t0 until A's flush({ durability: 'relay' }) resolved: every update durable on the relay. */
  flushMs: number;
  /** t0 until B's text equals the final text. */
  bSyncedMs: number;
  /** Traffic from t0 until both of the above. */
  wireA: WireCounts;
  wireB: WireCounts;
  /** Y.encodeStateAsUpdate / V2 of A's final doc. */
  finalV1Bytes: number;
  finalV2Bytes: number;
  local: LocalStorageResult | null;
}

export interface SequentialOptions {
  relay: BenchRelay;
  storage: ClientStorage;
  docName: string;
  patches: readonly Patch[];
  expected: string;
  coldOpens: number;
  timeoutMs: number;
}

interface Pair {
  a: DocHandle;
  b: DocHandle;
  countsA: WireCounts;
  countsB: WireCounts;
  close(): Promise<void>;
}

/** Clients A and B on one document, both synced with the relay. */
async function openPair(relay: BenchRelay, storage: ClientStorage, docName: string, factoryA: IDBFactory, timeoutMs: number): Promise<Pair> {
  const countsA = emptyCounts();
  const countsB = emptyCounts();
  const options = (counts: WireCounts, factory: IDBFactory): ClientOptions => ({
    url: relay.url,
    storage: storage === 'memory' ? 'memory' : new IndexedDbStorage({ factory }),
    WebSocket: countingWebSocket(NodeWebSocket, counts),
    crossTab: false,
    // With IndexedDB the log is measured before and after compaction, so the threshold is off.
    ...(storage === 'indexeddb' ? { compactAfterRows: NO_THRESHOLD_COMPACTION } : {}),
  });
  const clientA = createClient(options(countsA, factoryA));
  const clientB = createClient(options(countsB, new IDBFactory()));
  const close = async (): Promise<void> => {
    await Promise.all([clientA.close(), clientB.close()]);
  };
  try {
    const [a, b] = await Promise.all([clientA.open(docName), clientB.open(docName)]);
    await Promise.all([a.whenSynced({ timeoutMs }), b.whenSynced({ timeoutMs })]);
    return { a, b, countsA, countsB, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export async function runNodeSequential(o: SequentialOptions): Promise<SequentialRun> {
  const factoryA = new IDBFactory();
  const { a, b, countsA, countsB, close } = await openPair(o.relay, o.storage, o.docName, factoryA, o.timeoutMs);
  try {
    const bDone = whenTextEquals(b.doc, o.expected, o.timeoutMs);
    const startA = snapshotCounts(countsA);
    const startB = snapshotCounts(countsB);
    collectGarbage();

    const t0 = performance.now();
    const replay = await typePatches(a.doc, o.patches, nodeNextTask);
    await a.flush({ durability: 'relay', timeoutMs: o.timeoutMs });
    const flushMs = performance.now() - t0;
    const bSyncedMs = (await bDone) - t0;
    const wireA = diffCounts(countsA, startA);
    const wireB = diffCounts(countsB, startB);

    if (a.doc.getText(TEXT_NAME).toString() !== o.expected) throw new Error(`node ${o.storage}: client A's text differs from the expected text`);
    const finalV1Bytes = Y.encodeStateAsUpdate(a.doc).byteLength;
    const finalV2Bytes = Y.encodeStateAsUpdateV2(a.doc).byteLength;

    let local: LocalStorageResult | null = null;
    if (o.storage === 'indexeddb') {
      await a.flush({ durability: 'local', timeoutMs: o.timeoutMs });
      const localSavedMs = performance.now() - t0;
      const before = await a.localSize();
      const c0 = performance.now();
      await a.compactLocal();
      const compactMs = performance.now() - c0;
      const after = await a.localSize();
      await close();
      const coldOpenMs = await coldOpens(o, factoryA);
      local = { before, after, compactMs, localSavedMs, coldOpenMs };
    }
    return { replay, flushMs, bSyncedMs, wireA, wireB, finalV1Bytes, finalV2Bytes, local };
  } finally {
    await close();
  }
}

/** New clients (offline: only the local load is timed) on A's IndexedDB, one open each. */
async function coldOpens(o: SequentialOptions, factory: IDBFactory): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < o.coldOpens; i++) {
    collectGarbage();
    const client = createClient({ url: o.relay.url, storage: new IndexedDbStorage({ factory }), WebSocket: NodeWebSocket, crossTab: false, connect: false });
    try {
      const t = performance.now();
      const handle = await client.open(o.docName);
      const ms = performance.now() - t;
      if (handle.doc.getText(TEXT_NAME).toString() !== o.expected) throw new Error('node cold open: the reopened document differs from the expected text');
      times.push(ms);
    } finally {
      await client.close();
    }
  }
  return times;
}

/**
 * The client typing alone (memory storage): connected to `relay` (which is not waited for:
 * the client closes right after), or, without a relay, never connecting.
 */
export async function runNodeClientOnly(relay: BenchRelay | null, docName: string, patches: readonly Patch[], expected: string): Promise<TypingTime> {
  const client = createClient({
    url: relay?.url ?? 'ws://127.0.0.1:9',
    storage: 'memory',
    WebSocket: NodeWebSocket,
    crossTab: false,
    connect: relay !== null,
  });
  try {
    const handle = await client.open(docName);
    if (relay) await handle.whenSynced();
    collectGarbage();
    const time = await typePatches(handle.doc, patches, nodeNextTask);
    if (handle.doc.getText(TEXT_NAME).toString() !== expected) throw new Error('client-only replay: the text differs from the expected text');
    return time;
  } finally {
    // Waits for the local commit and compaction the replay started.
    await client.close();
  }
}

export interface BurstRun {
  patches: number;
  /** The synchronous loop. */
  replayMs: number;
  flushMs: number;
  bSyncedMs: number;
  wireA: WireCounts;
  wireB: WireCounts;
}

/** The first patches in one task (a burst: a paste of many edits, a script), A to B through the relay, memory storage. */
export async function runNodeBurst(relay: BenchRelay, docName: string, patches: readonly Patch[], expected: string, timeoutMs: number): Promise<BurstRun> {
  const { a, b, countsA, countsB, close } = await openPair(relay, 'memory', docName, new IDBFactory(), timeoutMs);
  try {
    const bDone = whenTextEquals(b.doc, expected, timeoutMs);
    const startA = snapshotCounts(countsA);
    const startB = snapshotCounts(countsB);
    collectGarbage();
    const t0 = performance.now();
    const replayMs = burstPatches(a.doc, patches);
    await a.flush({ durability: 'relay', timeoutMs });
    const flushMs = performance.now() - t0;
    const bSyncedMs = (await bDone) - t0;
    return { patches: patches.length, replayMs, flushMs, bSyncedMs, wireA: diffCounts(countsA, startA), wireB: diffCounts(countsB, startB) };
  } finally {
    await close();
  }
}
