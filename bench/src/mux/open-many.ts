/**
 * Part 1 of the mux benchmark: one client opens N small documents that the server already
 * holds and waits until every one is synced (and holds the seeded text). Measured per system:
 * wall time, sockets (counted by the client; for capsync also the relay's `capsync_sockets`),
 * client and server CPU, and the server's memory growth (after a forced GC) per open document.
 */
import { createClient } from '@capsync/client';
import { WebSocket as NodeWebSocket } from 'ws';
import { ownCpuMicros } from '../locks/cpu.js';
import type { ServerProcess } from '../server-process.js';
import { TEXT, smallText } from './content.js';
import { openCapsync, openProviders, type OpenDocs, type System } from './systems.js';

export interface OpenRun {
  system: System;
  round: number;
  docs: number;
  ms: number;
  /** WebSockets the client constructed. */
  clientSockets: number;
  /** The relay's `capsync_sockets` (all endpoints) with every document open; null for the reference. */
  relaySockets: number | null;
  clientCpuMs: number;
  serverCpuMs: number;
  /** Server RSS growth per open document after a forced GC, KiB (noisy: freed pages are not always returned). */
  serverKiBPerDoc: number;
  /** Server JS heap + external memory growth per open document after a forced GC, KiB. */
  serverHeapKiBPerDoc: number;
}

/**
 * Document names of one measurement: distinct per system and count, so no client finds a
 * document another one left (the relay still has them loaded from the seeding, as the
 * reference server holds all of its documents in memory).
 */
export function docNames(system: System, n: number, round: number): string[] {
  return Array.from({ length: n }, (_, i) => `mux-${system}-${n}-r${round}-${i}`);
}

/** Writes the seeded text into every document, through one multiplexed capsync client (durable on the relay). */
export async function seedCapsync(url: string, names: string[], seed: number, timeoutMs: number): Promise<void> {
  const client = createClient({ url, storage: 'memory', WebSocket: NodeWebSocket as never, crossTab: false });
  try {
    await Promise.all(
      names.map(async (name, i) => {
        const h = await client.open(name);
        await h.whenSynced({ timeoutMs });
        h.doc.getText(TEXT).insert(0, smallText(seed, i));
        await h.flush({ durability: 'relay', timeoutMs });
      }),
    );
  } finally {
    await client.close();
  }
}

/**
 * Writes the seeded text into every document of the reference server through one provider
 * each. The server applies a socket's messages in order, so the update sent after the sync is
 * applied before the close that follows it; the measurement checks the text anyway.
 */
export async function seedReference(serverUrl: string, names: string[], seed: number, timeoutMs: number): Promise<void> {
  const counter = { sockets: 0 };
  const open = await openProviders(serverUrl, names, counter, timeoutMs);
  open.docs.forEach((doc, i) => doc.getText(TEXT).insert(0, smallText(seed, i)));
  await open.close();
}

export async function measureOpen(system: System, round: number, server: ServerProcess, names: string[], seed: number, timeoutMs: number): Promise<OpenRun> {
  const counter = { sockets: 0 };
  // A fresh client starts on a clean heap (the server's is collected by memory()): otherwise it
  // pays for the seeding client's garbage and the previous measurement's, whichever system
  // that was (1,000 documents' worth; the order turns each round).
  (globalThis as { gc?: () => void }).gc?.();
  const mem0 = await server.memory();
  const cpu0 = await server.cpu();
  const own0 = ownCpuMicros();
  const t0 = performance.now();
  const serverUrl = `ws://127.0.0.1:${server.port}`;
  let open: OpenDocs;
  if (system === 'y-websocket') open = await openProviders(serverUrl, names, counter, timeoutMs);
  else open = await openCapsync(serverUrl, names, system === 'capsync-mux', counter, timeoutMs);
  const ms = performance.now() - t0;
  const clientCpuMs = (ownCpuMicros() - own0) / 1000;
  const cpu1 = await server.cpu();
  try {
    open.docs.forEach((doc, i) => {
      const text = doc.getText(TEXT).toString();
      if (text !== smallText(seed, i)) throw new Error(`${system}: ${names[i]} synced without its seeded text (${text.length} chars)`);
    });
    const relaySockets = system === 'y-websocket' ? null : await socketsAtRelay(server.port);
    const mem1 = await server.memory();
    return {
      system,
      round,
      docs: names.length,
      ms,
      clientSockets: counter.sockets,
      relaySockets,
      clientCpuMs,
      serverCpuMs: (cpu1.cpuMicros - cpu0.cpuMicros) / 1000,
      serverKiBPerDoc: (mem1.rss - mem0.rss) / 1024 / names.length,
      serverHeapKiBPerDoc: (mem1.heapUsed + mem1.external - mem0.heapUsed - mem0.external) / 1024 / names.length,
    };
  } finally {
    await open.close();
  }
}

/** Sum of `capsync_sockets` over its endpoints, from the relay's /metrics. */
export async function socketsAtRelay(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^capsync_sockets(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m) sum += Number(m[1]);
  }
  return sum;
}

