import type { DocStore } from '@capsync/core';
import type { Logger } from '../logger.js';
import type { DocRegistry } from '../relay/doc-registry.js';
import type { PeerEndpoint } from './peer-endpoint.js';
import type { PeerMesh } from './peer-mesh.js';
import { httpUrlOf } from './peer-socket.js';

export interface ReplicateAllOptions {
  mesh: PeerMesh;
  registry: DocRegistry;
  store: DocStore;
  logger: Logger;
  /** How often every document is swept, on top of a sweep each time a peer comes up. */
  intervalMs: number;
  /** Documents synced at once per peer. */
  concurrency?: number;
  /** Give up on one document's sync after this long (it is retried on the next sweep). */
  docTimeoutMs?: number;
}

/**
 * The replicate-all mode: besides the documents clients have open, every document this relay
 * or a peer stores is synced, so this relay is a full replica (a backup, or a relay that can
 * take over a region). A sweep lists the peer's documents (GET /v1/docs with the relay
 * credential) and this relay's own, then loads each one and waits until its link to the peer
 * has exchanged state vectors both ways, a few documents at a time. Documents already in
 * sync cost two state vectors each. Sweeps run when a peer comes up and every `intervalMs`.
 */
export class ReplicateAll {
  private timer: NodeJS.Timeout | null = null;
  private readonly running = new Map<PeerEndpoint, Promise<void>>();
  private closed = false;

  constructor(private readonly options: ReplicateAllOptions) {}

  start(): void {
    for (const ep of this.options.mesh.endpoints) ep.on('up', () => void this.sweep(ep));
    this.timer = setInterval(() => {
      for (const ep of this.options.mesh.endpoints) if (ep.up) void this.sweep(ep);
    }, this.options.intervalMs);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Syncs every document with `ep`; a sweep already running for it is joined, not repeated. */
  sweep(ep: PeerEndpoint): Promise<void> {
    let run = this.running.get(ep);
    if (!run) {
      run = this.sweepNow(ep).finally(() => this.running.delete(ep));
      this.running.set(ep, run);
    }
    return run;
  }

  private async sweepNow(ep: PeerEndpoint): Promise<void> {
    const { logger, store } = this.options;
    const started = performance.now();
    let names: string[];
    try {
      const [ours, theirs] = await Promise.all([store.list(), this.listPeer(ep)]);
      names = Array.from(new Set([...ours, ...theirs])).sort();
    } catch (err) {
      logger.warn({ peer: ep.logUrl, err: (err as Error).message }, 'replicate-all: listing documents failed; retrying at the next sweep');
      return;
    }
    let synced = 0;
    let failed = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < names.length && !this.closed && ep.up) {
        const name = names[next++]!;
        if (await this.syncOne(name, ep)) synced++;
        else failed++;
      }
    };
    await Promise.all(Array.from({ length: this.options.concurrency ?? 4 }, worker));
    logger.info({ peer: ep.logUrl, docs: names.length, synced, failed, ms: Math.round(performance.now() - started) }, 'replicate-all sweep done');
  }

  private async syncOne(name: string, ep: PeerEndpoint): Promise<boolean> {
    const { registry, mesh, logger } = this.options;
    let doc;
    try {
      doc = await registry.acquire(name);
    } catch (err) {
      logger.error({ err, doc: name }, 'replicate-all: loading a document failed');
      return false;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeoutMs = this.options.docTimeoutMs ?? 30_000;
      return await Promise.race([
        mesh.syncWith(name, doc, ep).then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
      ]);
    } finally {
      clearTimeout(timer);
      registry.release(name, doc);
    }
  }

  private async listPeer(ep: PeerEndpoint): Promise<string[]> {
    const token = await ep.credential();
    const res = await fetch(`${httpUrlOf(ep.url)}/v1/docs`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`GET /v1/docs answered ${res.status}`);
    const body = (await res.json()) as { docs?: unknown };
    if (!Array.isArray(body.docs) || !body.docs.every((d) => typeof d === 'string')) throw new Error('GET /v1/docs: malformed answer');
    return body.docs as string[];
  }
}
