/**
 * One measurement: a fresh document on two peered relays, a partition, N divergent updates
 * on each side (on top of a shared history for the history variant), the heal, and what it
 * took for both relays to hold the same state again: time, and the bytes through the proxy.
 */
import * as Y from 'yjs';
import { validateUpdateFor } from '@capsync/core';
import { othersCpuMicros, sampleOthersCpu } from '../machine.js';
import { epochMs } from './clock.js';
import { CLIENT_A, CLIENT_B, HISTORY_CLIENT } from './edits.js';
import { EditClient, covers, type StateVector } from './edit-client.js';
import type { PartitionProxy } from './proxy.js';
import type { ConnectionStats } from './proxy-protocol.js';
import type { BenchRelay } from './relay.js';

const LINK_UP_TIMEOUT_MS = 20_000;
/** After convergence, the link counts as settled once no byte moved on it for this long. */
const QUIET_MS = 300;
const SETTLE_LIMIT_MS = 10_000;
/** While waiting for the broadcasts, the relays' states are also compared this often (a fallback). */
const POLL_MS = 2_000;
/** Before the heal, both relays must be idle: at most this much CPU in a window of this length. */
const IDLE_WINDOW_MS = 200;
const IDLE_MAX_CPU_MICROS = 10_000;
const IDLE_LIMIT_MS = 15_000;
/** How long the previous run's document may take to unload (the relays run with --idle-timeout-ms 1000). */
const UNLOAD_LIMIT_MS = 15_000;

export interface PointSpec {
  /** Short id, used in document names. */
  id: string;
  /** Divergent updates per side. */
  diff: number;
  /** Shared history (updates before the partition), 0 for none. */
  history: number;
}

export interface Workload {
  /** The shared history as written to both relays (its final state, one message), or empty. */
  history: Uint8Array[];
  /** Divergent updates of the client on relay A and on relay B. */
  editsA: Uint8Array[];
  editsB: Uint8Array[];
}

export interface Bytes {
  /** Payload B→A and A→B: what followed the HTTP upgrade (WebSocket frames). */
  payloadToA: number;
  payloadToB: number;
  /** The upgrade request and response heads. */
  headToA: number;
  headToB: number;
}

export interface PointRun {
  spec: PointSpec;
  repeat: number;
  docName: string;
  /** Time to write the divergent edits (both sides at once) until all were acknowledged, ms. */
  writeMs: number;
  /** Heal → both relays hold the merged state (the later of the two), ms. */
  healToConvergedMs: number;
  /** Heal → the document link's upgrade completed (the `101` passed the proxy), ms. */
  healToLinkUpMs: number;
  /** Heal → the control link to the peer was up again, ms (NaN when not seen). */
  healToControlUpMs: number;
  /** Link up → converged: the convergence work itself, ms. */
  linkUpToConvergedMs: number;
  /** When each relay held the merged state, ms after the heal. */
  convergedAtA: number;
  convergedAtB: number;
  /** How convergence was detected: the relays' broadcasts to the bench clients, or the fallback polling. */
  detectedBy: 'broadcast' | 'poll';
  /** Bytes of the document link after the heal, until it was quiet. */
  bytes: Bytes;
  /** Bytes of the document link up to the moment both relays held the merged state. */
  payloadAtConvergence: number;
  /** Document-link connections accepted after the heal. */
  linkConnections: number;
  /** Minimal diff computed from the relays' states just before the heal. */
  minimal: { aLacks: number; bLacks: number; svA: number; svB: number };
  /** The same Yjs work in the bench process, ms, both sides together; existing items split by the applies; structs before. */
  yjs: { encodeMs: number; validateMs: number; applyMs: number; splits: number; structs: number };
  /** Size of the merged state (one update). */
  stateBytes: number;
  /** Both relays' encoded states were byte-identical afterwards (state vectors are always compared). */
  bytesIdentical: boolean;
  /** CPU time of relay A and B from the heal until the link was settled, ms (10 ms ticks). */
  cpuMsA: number;
  cpuMsB: number;
  /** CPU other processes on the machine used from heal to convergence, percent of one core. */
  otherCpuPct: number;
  /** Relay B's own capsync_peer_converge_seconds for this link, ms (when exactly one link converged meanwhile). */
  relayReportedMs: number | null;
}

export interface Harness {
  a: BenchRelay;
  b: BenchRelay;
  proxy: PartitionProxy;
  window: number;
  timeoutMs: number;
  log(line: string): void;
}

export async function runPoint(h: Harness, spec: PointSpec, work: Workload, repeat: number, runTag: string): Promise<PointRun> {
  const docName = `converge-${runTag}-${spec.id}-r${repeat}`;
  const docPath = `/${encodeURIComponent(docName)}?`;
  // The previous run's document must be gone from both relays (unloaded, its link closed):
  // its link would reconnect at the heal too, and take CPU and count in B's own measure.
  if (!(await waitUnloaded([h.a, h.b]))) h.log(`${docName}: a previous document is still loaded after ${UNLOAD_LIMIT_MS / 1000} s; measuring anyway`);
  const clientA = await EditClient.connect(h.a.docUrl(docName), `client on A (${docName})`);
  let clientB: EditClient | null = null;
  try {
    clientB = await EditClient.connect(h.b.docUrl(docName), `client on B (${docName})`);
    // B has the document loaded now, so it opens its link to A: wait until it is up, then cut it.
    const initial = await waitForLink(h, docPath, 0, LINK_UP_TIMEOUT_MS);
    if (!initial) throw new Error(peeringProblem(h, docName, 'before the partition'));
    await h.proxy.partition();

    if (work.history.length > 0) await Promise.all([clientA.write(work.history, h.window), clientB.write(work.history, h.window)]);
    const t0 = performance.now();
    await Promise.all([clientA.write(work.editsA, h.window), clientB.write(work.editsB, h.window)]);
    const writeMs = performance.now() - t0;

    // The relays' states just before the heal, and the minimal diff between them.
    const [stateA, stateB] = await Promise.all([h.a.docState(docName), h.b.docState(docName)]);
    const svA = Y.encodeStateVectorFromUpdate(stateA);
    const svB = Y.encodeStateVectorFromUpdate(stateB);
    const mapA = Y.decodeStateVector(svA);
    const mapB = Y.decodeStateVector(svB);
    checkDiverged(mapA, mapB, work, docName);
    const { minimal, yjs } = minimalDiff(stateA, stateB, svA, svB);
    const target: StateVector = new Map(mapA);
    for (const [client, clock] of mapB) target.set(client, Math.max(clock, target.get(client) ?? 0));

    // Compactions the writes started may still run: heal once both relays are idle.
    await waitIdle([h.a, h.b]);
    const metricsBefore = await relayConverge(h.b);
    const cpuA0 = h.a.cpuMicros();
    const cpuB0 = h.b.cpuMicros();
    const others0 = sampleOthersCpu();
    clientA.resetReceived();
    clientB.resetReceived();
    const seenA = clientA.whenCovers(mapA, target);
    const seenB = clientB.whenCovers(mapB, target);
    const healed = await h.proxy.heal();
    const healedAt = healed.at;

    const converged = await waitConverged(h, docName, seenA, seenB, healedAt);
    clientA.cancelWatch();
    clientB.cancelWatch();
    const others1 = sampleOthersCpu();
    const convergedAt = Math.max(converged.atA, converged.atB);
    const othersMs = othersCpuMicros(others0, others1) / 1000;

    const atConvergence = await h.proxy.stats(docPath);
    const settled = await settle(h, docPath, convergedAt);
    const cpuA1 = h.a.cpuMicros();
    const cpuB1 = h.b.cpuMicros();
    const links = settled.connections.filter((c) => c.route === 'to-a');
    const up = links.filter((c) => c.upAt > 0).sort((x, y) => x.upAt - y.upAt)[0];
    if (!up) throw new Error(peeringProblem(h, docName, 'after the heal (converged without a document link?)'));
    const control = (await h.proxy.stats('/.capsync/mesh?')).connections.filter((c) => c.upAt > 0).sort((x, y) => x.upAt - y.upAt)[0];

    // Identical state: equal state vectors (checked) and, reported, equal encodings.
    const [afterA, afterB] = await Promise.all([h.a.docState(docName), h.b.docState(docName)]);
    const svAfterA = Y.decodeStateVector(Y.encodeStateVectorFromUpdate(afterA));
    const svAfterB = Y.decodeStateVector(Y.encodeStateVectorFromUpdate(afterB));
    if (!covers(svAfterA, target) || !covers(svAfterB, target) || !covers(svAfterA, svAfterB) || !covers(svAfterB, svAfterA)) {
      throw new Error(`${docName}: the relays' state vectors differ after convergence was detected`);
    }
    const bytesIdentical = equalBytes(afterA, afterB) || sameContent(afterA, afterB);
    if (!bytesIdentical) throw new Error(`${docName}: the relays hold different content after convergence`);

    const metricsAfter = await relayConverge(h.b);
    const relayReportedMs =
      metricsBefore && metricsAfter && metricsAfter.count - metricsBefore.count === 1 ? (metricsAfter.sum - metricsBefore.sum) * 1000 : null;

    const bytes = sumBytes(links);
    const elapsedMs = convergedAt - healedAt;
    return {
      spec,
      repeat,
      docName,
      writeMs,
      healToConvergedMs: elapsedMs,
      healToLinkUpMs: up.upAt - healedAt,
      healToControlUpMs: control ? control.upAt - healedAt : Number.NaN,
      linkUpToConvergedMs: convergedAt - up.upAt,
      convergedAtA: converged.atA - healedAt,
      convergedAtB: converged.atB - healedAt,
      detectedBy: converged.by,
      bytes,
      payloadAtConvergence: sumBytes(atConvergence.connections.filter((c) => c.route === 'to-a')).payloadToA + sumBytes(atConvergence.connections.filter((c) => c.route === 'to-a')).payloadToB,
      linkConnections: links.length,
      minimal,
      yjs,
      stateBytes: afterA.byteLength,
      bytesIdentical: equalBytes(afterA, afterB),
      cpuMsA: (cpuA1 - cpuA0) / 1000,
      cpuMsB: (cpuB1 - cpuB0) / 1000,
      otherCpuPct: elapsedMs > 0 ? (100 * othersMs) / elapsedMs : Number.NaN,
      relayReportedMs,
    };
  } finally {
    await Promise.all([clientA.close(), clientB?.close()]);
  }
}

/** Waits until a document link for `docPath` has been upgraded (after `since`); its stats, or null on timeout. */
async function waitForLink(h: Harness, docPath: string, since: number, timeoutMs: number): Promise<ConnectionStats | null> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const stats = await h.proxy.stats(docPath);
    const up = stats.connections.find((c) => c.upAt > since && c.closedAt === 0);
    if (up) return up;
    if (performance.now() > deadline) return null;
    await sleep(10);
  }
}

function peeringProblem(h: Harness, docName: string, when: string): string {
  return (
    `no document link from relay B to relay A for "${docName}" came up ${when} ` +
    `(B: ${h.b.commandLine}; A: ${h.a.commandLine}). Relay B's recent log:\n${h.b.recentStderr() || '(nothing)'}`
  );
}

/** The partition must have held: neither relay may hold the other side's edits yet. */
function checkDiverged(svA: StateVector, svB: StateVector, work: Workload, docName: string): void {
  if ((svA.get(CLIENT_A) ?? 0) === 0 || (svB.get(CLIENT_B) ?? 0) === 0) throw new Error(`${docName}: a relay is missing its own client's edits before the heal`);
  if (svA.has(CLIENT_B) || svB.has(CLIENT_A)) {
    throw new Error(`${docName}: edits crossed the partition before the heal (A has B's: ${svA.get(CLIENT_B) ?? 0}, B has A's: ${svB.get(CLIENT_A) ?? 0})`);
  }
  if (work.history.length > 0) {
    const a = svA.get(HISTORY_CLIENT) ?? 0;
    const b = svB.get(HISTORY_CLIENT) ?? 0;
    if (a === 0 || a !== b) throw new Error(`${docName}: the relays do not share the history (its clock: ${a} on A, ${b} on B)`);
  }
}

/**
 * encodeStateAsUpdate(A, svB) and encodeStateAsUpdate(B, svA), from the relays' states; and,
 * to show where a relay's time goes, the same Yjs work done here in the bench process (the
 * relays do it in parallel, each one encode, one validation and one apply): encoding both
 * diffs, validating them (@capsync/core's validateUpdateFor, as a relay does) and applying
 * them, and how many existing items the applies had to split.
 */
function minimalDiff(stateA: Uint8Array, stateB: Uint8Array, svA: Uint8Array, svB: Uint8Array): { minimal: PointRun['minimal']; yjs: PointRun['yjs'] } {
  const docA = new Y.Doc();
  const docB = new Y.Doc();
  try {
    Y.applyUpdate(docA, stateA);
    Y.applyUpdate(docB, stateB);
    let t = performance.now();
    const bLacks = Y.encodeStateAsUpdate(docA, svB);
    const aLacks = Y.encodeStateAsUpdate(docB, svA);
    const encodeMs = performance.now() - t;
    t = performance.now();
    validateUpdateFor(docA, aLacks);
    validateUpdateFor(docB, bLacks);
    const validateMs = performance.now() - t;
    const beforeA = structsExcept(docA, CLIENT_B);
    const beforeB = structsExcept(docB, CLIENT_A);
    t = performance.now();
    Y.applyUpdate(docA, aLacks);
    Y.applyUpdate(docB, bLacks);
    const applyMs = performance.now() - t;
    const splits = structsExcept(docA, CLIENT_B) - beforeA + (structsExcept(docB, CLIENT_A) - beforeB);
    return {
      minimal: { bLacks: bLacks.byteLength, aLacks: aLacks.byteLength, svA: svA.byteLength, svB: svB.byteLength },
      yjs: { encodeMs, validateMs, applyMs, splits, structs: beforeA + beforeB },
    };
  } finally {
    docA.destroy();
    docB.destroy();
  }
}

/** Structs in the document's store of every client but `except` (the one whose diff is applied). */
function structsExcept(doc: Y.Doc, except: number): number {
  let n = 0;
  for (const [client, structs] of doc.store.clients) if (client !== except) n += structs.length;
  return n;
}

interface Converged {
  atA: number;
  atB: number;
  by: 'broadcast' | 'poll';
}

/**
 * Both relays' broadcasts completing the merged state vector; meanwhile, every couple of
 * seconds, the relays' states are compared directly, in case a broadcast never comes.
 */
async function waitConverged(h: Harness, docName: string, seenA: Promise<number>, seenB: Promise<number>, healedAt: number): Promise<Converged> {
  let done = false;
  const byBroadcast = Promise.all([seenA, seenB]).then(([atA, atB]): Converged => ({ atA, atB, by: 'broadcast' }));
  const byPoll = (async (): Promise<Converged | null> => {
    while (!done) {
      await sleep(POLL_MS);
      if (done) return null;
      const [a, b] = await Promise.all([h.a.docState(docName), h.b.docState(docName)]).catch(() => [null, null]);
      if (a && b && equalBytes(Y.encodeStateVectorFromUpdate(a), Y.encodeStateVectorFromUpdate(b)) && !done) {
        const at = epochMs();
        return { atA: at, atB: at, by: 'poll' };
      }
    }
    return null;
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), h.timeoutMs)));
  try {
    const first = await Promise.race([byBroadcast, byPoll.then((r) => r ?? new Promise<never>(() => {})), timeout]);
    if (!first) {
      const stats = await h.proxy.stats(`/${encodeURIComponent(docName)}?`);
      throw new Error(
        `${docName}: no convergence within ${h.timeoutMs} ms of the heal (at ${(epochMs() - healedAt).toFixed(0)} ms; ` +
          `document-link connections after the heal: ${JSON.stringify(stats.connections)}). Relay B's recent log:\n${h.b.recentStderr() || '(nothing)'}`,
      );
    }
    return first;
  } finally {
    done = true;
    clearTimeout(timer);
  }
}

/** Waits until the link has been quiet for a while after convergence; the final stats. */
async function settle(h: Harness, docPath: string, convergedAt: number): Promise<Awaited<ReturnType<PartitionProxy['stats']>>> {
  const deadline = epochMs() + SETTLE_LIMIT_MS;
  for (;;) {
    const stats = await h.proxy.stats(docPath);
    const last = Math.max(convergedAt, ...stats.connections.map((c) => c.lastByteAt));
    if (stats.at - last >= QUIET_MS || epochMs() > deadline) return stats;
    await sleep(50);
  }
}

/** Waits until no relay has a document loaded; false on timeout. */
async function waitUnloaded(relays: BenchRelay[]): Promise<boolean> {
  const deadline = performance.now() + UNLOAD_LIMIT_MS;
  for (;;) {
    const texts = await Promise.all(relays.map((r) => r.metricsText().catch(() => '')));
    if (texts.every((t) => gauge(t, 'capsync_docs_loaded') === 0)) return true;
    if (performance.now() > deadline) return false;
    await sleep(100);
  }
}

function gauge(metrics: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics);
  return m ? Number(m[1]) : Number.NaN;
}

/**
 * Waits until every relay used at most one 10 ms CPU tick in a 200 ms window (or gives up
 * after a while: the report's CPU columns would show a busy relay).
 */
async function waitIdle(relays: BenchRelay[]): Promise<void> {
  const deadline = performance.now() + IDLE_LIMIT_MS;
  while (performance.now() < deadline) {
    const before = relays.map((r) => r.cpuMicros());
    await sleep(IDLE_WINDOW_MS);
    const busy = relays.some((r, i) => r.cpuMicros() - before[i]! > IDLE_MAX_CPU_MICROS);
    if (!busy) return;
  }
}

function sumBytes(connections: ConnectionStats[]): Bytes {
  const b: Bytes = { payloadToA: 0, payloadToB: 0, headToA: 0, headToB: 0 };
  for (const c of connections) {
    // Route to-a: B connected to A, so "to target" is B→A.
    b.payloadToA += c.payload.toTarget;
    b.payloadToB += c.payload.toClient;
    b.headToA += c.head.toTarget;
    b.headToB += c.head.toClient;
  }
  return b;
}

/** Sum and count of relay B's capsync_peer_converge_seconds, or null when it has none. */
async function relayConverge(relay: BenchRelay): Promise<{ sum: number; count: number } | null> {
  const text = await relay.metricsText().catch(() => '');
  const sum = /^capsync_peer_converge_seconds_sum(?:\{[^}]*\})? (\S+)$/m.exec(text);
  const count = /^capsync_peer_converge_seconds_count(?:\{[^}]*\})? (\S+)$/m.exec(text);
  return sum && count ? { sum: Number(sum[1]), count: Number(count[1]) } : null;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** Same text content, when the encodings differ (Yjs may split or merge items differently). */
function sameContent(a: Uint8Array, b: Uint8Array): boolean {
  const docA = new Y.Doc();
  const docB = new Y.Doc();
  try {
    Y.applyUpdate(docA, a);
    Y.applyUpdate(docB, b);
    return docA.getText('t').toString() === docB.getText('t').toString();
  } finally {
    docA.destroy();
    docB.destroy();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
