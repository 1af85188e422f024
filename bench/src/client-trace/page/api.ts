/**
 * What the benchmark page exposes as `window.clientTrace`, for the Chromium runner to drive
 * through page.evaluate. Types only.
 */
import type { ReplicaSize } from '@capsync/client';
import type { TypingTime } from '../replay.js';
import type { WireCounts } from '../wire-count.js';

/** Served next to the page as trace.json. */
export interface PageTrace {
  patches: [number, number, string][];
  expected: string;
}

export interface PageDocArgs {
  relayUrl: string;
  docName: string;
}

export interface WriterResult {
  /** performance.timeOrigin + performance.now() when the replay started (comparable across pages). */
  t0Epoch: number;
  replay: TypingTime;
  /** Frames from the relay (acks) the writing page handled while it was typing. */
  receivedWhileTyping: number;
  /** t0 until flush({ durability: 'relay' }) resolved. */
  flushMs: number;
  /** t0 until flush({ durability: 'local' }) resolved (everything in IndexedDB). */
  localSavedMs: number;
  wire: WireCounts;
  finalV1Bytes: number;
  finalV2Bytes: number;
  before: ReplicaSize;
  after: ReplicaSize;
  compactMs: number;
}

export interface ReceiverResult {
  /** Epoch milliseconds when the text first equalled the expected text. */
  doneEpoch: number;
  wire: WireCounts;
}

export interface ClientTraceApi {
  /** Loads trace.json (the patches and the expected final text). */
  loadTrace(): Promise<{ patches: number; expectedLength: number }>;
  /** The plain-Yjs baseline in this page: the patches typed on a bare Y.Doc with an update listener. */
  plainReplay(): Promise<TypingTime>;
  /** Opens the document as the receiving client and waits until it is synced with the relay. */
  startReceiver(args: PageDocArgs): Promise<void>;
  /** Resolves once the receiving client holds the expected text. */
  receiverDone(): Promise<ReceiverResult>;
  /** Replays the trace as the writing client, saves, measures and compacts the local replica, closes. */
  replay(args: PageDocArgs): Promise<WriterResult>;
  /** A new client (offline) opening the document from IndexedDB: milliseconds until loaded. */
  coldOpen(args: PageDocArgs & { expected: string }): Promise<{ ms: number; textOk: boolean }>;
}

declare global {
  interface Window {
    clientTrace?: ClientTraceApi;
  }
}
