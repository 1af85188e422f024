/**
 * The Chromium side of the client-trace benchmark: capsync clients with IndexedDB storage in a
 * real browser, driven from Node through `window.clientTrace` (see api.ts). One page writes
 * (replays the trace), another page in its own browser context receives.
 */
import * as Y from 'yjs';
import { createClient, type CapsyncClient, type DocHandle, type WebSocketConstructor } from '@capsync/client';
import { NO_THRESHOLD_COMPACTION, TEXT_NAME, typePatches, whenTextEquals, type NextTask, type Patch, type TypingTime } from '../replay.js';
import { countingWebSocket, diffCounts, emptyCounts, snapshotCounts } from '../wire-count.js';
import type { ClientTraceApi, PageDocArgs, PageTrace, ReceiverResult, WriterResult } from './api.js';

const TIMEOUT_MS = 15 * 60_000;
const WARM_UP_PATCHES = 20_000;

let trace: PageTrace | null = null;
let receiver: Promise<ReceiverResult> | null = null;

const epoch = (now: number): number => performance.timeOrigin + now;

/** The next patch in a new task, without setTimeout's 4 ms clamp: a message to ourselves. */
const channel = new MessageChannel();
let nextResolve: (() => void) | null = null;
channel.port1.onmessage = () => {
  const resolve = nextResolve;
  nextResolve = null;
  resolve?.();
};
const nextTask: NextTask = () =>
  new Promise<void>((resolve) => {
    nextResolve = resolve;
    channel.port2.postMessage(null);
  });
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

function loaded(): PageTrace {
  if (!trace) throw new Error('call loadTrace() first');
  return trace;
}

async function openSynced(client: CapsyncClient, docName: string): Promise<DocHandle> {
  const handle = await client.open(docName);
  await handle.whenSynced({ timeoutMs: TIMEOUT_MS });
  return handle;
}

const api: ClientTraceApi = {
  async loadTrace() {
    const response = await fetch('./trace.json');
    if (!response.ok) throw new Error(`trace.json: HTTP ${response.status}`);
    trace = (await response.json()) as PageTrace;
    return { patches: trace.patches.length, expectedLength: trace.expected.length };
  },

  async plainReplay() {
    const { patches, expected } = loaded();
    const replay = async (list: Patch[]): Promise<{ time: TypingTime; doc: Y.Doc }> => {
      const doc = new Y.Doc();
      const kept: Uint8Array[] = [];
      doc.on('update', (u: Uint8Array) => kept.push(u));
      gc();
      return { time: await typePatches(doc, list, nextTask), doc };
    };
    // Untimed warm-up, as in Node: the JIT sees Yjs once before the measured replay.
    (await replay(patches.slice(0, WARM_UP_PATCHES) as Patch[])).doc.destroy();
    const { time, doc } = await replay(patches as Patch[]);
    if (doc.getText(TEXT_NAME).toString() !== expected) throw new Error('plain Yjs in the page: the text differs from the expected text');
    doc.destroy();
    return time;
  },

  async startReceiver({ relayUrl, docName }: PageDocArgs) {
    const { expected } = loaded();
    const counts = emptyCounts();
    const client = createClient({ url: relayUrl, storage: 'indexeddb', crossTab: false, WebSocket: countingWebSocket(WebSocket as WebSocketConstructor, counts) });
    const handle = await openSynced(client, docName);
    const start = snapshotCounts(counts);
    const done = whenTextEquals(handle.doc, expected, TIMEOUT_MS);
    receiver = done.then(async (at) => {
      const wire = diffCounts(counts, start);
      await client.close();
      return { doneEpoch: epoch(at), wire };
    });
    // Surfaced by receiverDone(); not an unhandled rejection meanwhile.
    receiver.catch(() => {});
  },

  receiverDone() {
    if (!receiver) return Promise.reject(new Error('call startReceiver() first'));
    return receiver;
  },

  async replay({ relayUrl, docName }: PageDocArgs): Promise<WriterResult> {
    const { patches, expected } = loaded();
    const counts = emptyCounts();
    const client = createClient({
      url: relayUrl,
      storage: 'indexeddb',
      crossTab: false,
      compactAfterRows: NO_THRESHOLD_COMPACTION,
      WebSocket: countingWebSocket(WebSocket as WebSocketConstructor, counts),
    });
    try {
      const handle = await openSynced(client, docName);
      const start = snapshotCounts(counts);
      gc();
      const t0 = performance.now();
      const replay = await typePatches(handle.doc, patches as Patch[], nextTask);
      const receivedWhileTyping = counts.receivedFrames - start.receivedFrames;
      await handle.flush({ durability: 'relay', timeoutMs: TIMEOUT_MS });
      const flushMs = performance.now() - t0;
      const wire = diffCounts(counts, start);
      await handle.flush({ durability: 'local', timeoutMs: TIMEOUT_MS });
      const localSavedMs = performance.now() - t0;
      if (handle.doc.getText(TEXT_NAME).toString() !== expected) throw new Error("the writing page's text differs from the expected text");
      const finalV1Bytes = Y.encodeStateAsUpdate(handle.doc).byteLength;
      const finalV2Bytes = Y.encodeStateAsUpdateV2(handle.doc).byteLength;
      const before = await handle.localSize();
      const c0 = performance.now();
      await handle.compactLocal();
      const compactMs = performance.now() - c0;
      const after = await handle.localSize();
      return { t0Epoch: epoch(t0), replay, receivedWhileTyping, flushMs, localSavedMs, wire, finalV1Bytes, finalV2Bytes, before, after, compactMs };
    } finally {
      await client.close();
    }
  },

  async coldOpen({ relayUrl, docName, expected }: PageDocArgs & { expected: string }) {
    const client = createClient({ url: relayUrl, storage: 'indexeddb', crossTab: false, connect: false });
    try {
      const t = performance.now();
      const handle = await client.open(docName);
      const ms = performance.now() - t;
      return { ms, textOk: handle.doc.getText(TEXT_NAME).toString() === expected };
    } finally {
      await client.close();
    }
  },
};

window.clientTrace = api;
