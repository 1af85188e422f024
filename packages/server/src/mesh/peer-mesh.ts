import type { AccessGrant } from '../auth/access.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { DocRegistry } from '../relay/doc-registry.js';
import type { RelayDoc } from '../relay/relay-doc.js';
import { PeerEndpoint } from './peer-endpoint.js';
import { PeerLink } from './peer-link.js';
import type { PeerMuxSocket, PeerMuxSocketDeps } from './peer-mux-socket.js';

export interface PeerMeshOptions {
  relayId: string;
  peers: string[];
  credential: () => Promise<string | undefined>;
  registry: DocRegistry;
  metrics: RelayMetrics;
  logger: Logger;
  /** A document link's send buffer bounds (see SendBuffer): past them it resyncs on a new socket. */
  sendBufferLimit: number;
  slowConsumerGraceMs: number;
  /** Bytes of input a document link may queue while its document is paused (see InputQueue). */
  maxQueuedBytes: number;
  /** Control-link heartbeat; a peer silent this long (twice at most) counts as down. */
  heartbeatMs?: number;
  backoff?: { baseMs: number; maxMs: number };
  /** Dial peers' multiplexed endpoint, one socket per peer for every document (`--mux`). */
  mux: boolean;
  /** Serves a document session a peer opened on the socket this relay dialled (peer trust; see PeerMuxSocket). */
  serve: PeerMuxSocketDeps['serve'];
}

/** A peer relay's rights on the socket this relay dialled to it: those of a relay credential (every document). */
const DIALLED_PEER_GRANT: AccessGrant = { permission: 'write', relay: true };

/** Something connected to us for a document from a peer relay (its inbound document link). */
export interface InboundPeerLink {
  readonly docName: string;
}

/**
 * The relay's place in the mesh: one PeerEndpoint per configured peer, and document links to
 * them for the documents this relay has loaded (on demand).
 *
 * One link per document per pair of relays: a relay does not open a link to a peer that
 * already has one open to it for that document; if both opened one at once, the link opened
 * by the relay with the smaller id stays and the other side closes its own. When a peer's
 * inbound link goes away while this relay still needs the document for itself (a client, an
 * HTTP request or a replicate-all sweep holds it, not just peers' links), this relay opens
 * its own; a document held only for peers is left to unload, or relays that unload it in turn
 * would reload each other's copy forever.
 * Changes flood: a relay forwards what it receives from one peer to its other peers, so the
 * mesh converges even where a pair of relays has no direct link.
 */
export class PeerMesh {
  readonly endpoints: PeerEndpoint[];
  /** Outgoing links by document, then endpoint. */
  private readonly links = new Map<string, Map<PeerEndpoint, PeerLink>>();
  /** Inbound links from peers by document, then peer relay id. */
  private readonly inbound = new Map<string, Map<string, Set<InboundPeerLink>>>();
  /** The latest socket each peer relay dialled to this relay (by its id), once it said hello. */
  private readonly inboundSockets = new Map<string, PeerMuxSocket>();
  /** Loaded documents (this relay's), for links and lag metrics. */
  private readonly docs = new Map<string, RelayDoc>();
  private closed = false;
  private readonly backoff: { baseMs: number; maxMs: number };

  constructor(private readonly options: PeerMeshOptions) {
    const heartbeatMs = options.heartbeatMs ?? 1000;
    this.backoff = options.backoff ?? { baseMs: 100, maxMs: 2000 };
    this.endpoints = options.peers.map(
      (url) =>
        new PeerEndpoint(url, {
          relayId: options.relayId,
          credential: options.credential,
          logger: options.logger,
          heartbeatMs,
          backoff: this.backoff,
          metrics: options.metrics,
          mux: options.mux,
          outbound: { sendBufferLimit: options.sendBufferLimit, slowConsumerGraceMs: options.slowConsumerGraceMs },
          socket: { maxQueuedBytes: options.maxQueuedBytes, grantFor: () => DIALLED_PEER_GRANT, serve: options.serve },
          inboundSocket: (id) => this.inboundSockets.get(id),
        }),
    );
  }

  start(): void {
    const { registry, metrics, logger } = this.options;
    registry.on('loaded', this.onLoaded);
    registry.on('unloaded', this.onUnloaded);
    for (const ep of this.endpoints) {
      metrics.peerUp.set({ peer: ep.logUrl }, 0);
      let knownAs: string | undefined;
      ep.on('up', () => {
        if (knownAs !== undefined && knownAs !== ep.id) {
          // A new incarnation (relay ids default to one per start): the old id will never ack
          // again, and its mark would keep every later change in the replication logs.
          for (const doc of this.docs.values()) doc.replication.forget(knownAs);
        }
        knownAs = ep.id;
        metrics.peerUp.set({ peer: ep.logUrl }, 1);
        metrics.peerLinkChanges.inc({ peer: ep.logUrl, state: 'up' });
        logger.info({ peer: ep.logUrl, peerId: ep.id }, 'peer relay up');
        for (const name of this.docs.keys()) {
          // A link created before we knew the peer's id may duplicate the peer's own link.
          if (ep.id && this.hasInbound(name, ep.id)) this.removeLink(name, ep);
          else this.ensureLink(name, ep);
        }
        for (const byEp of this.links.values()) void byEp.get(ep)?.connect();
      });
      ep.on('down', (reason) => {
        metrics.peerUp.set({ peer: ep.logUrl }, 0);
        metrics.peerLinkChanges.inc({ peer: ep.logUrl, state: 'down' });
        logger.warn({ peer: ep.logUrl, peerId: ep.id, reason }, 'peer relay down (partition or peer stopped)');
        for (const byEp of this.links.values()) byEp.get(ep)?.drop();
      });
      ep.start();
    }
  }

  /** Outgoing links of a document (tests, replicate-all). */
  linksOf(name: string): PeerLink[] {
    return Array.from(this.links.get(name)?.values() ?? []);
  }

  /** A peer relay's multiplexed socket to this relay said hello: it may become the pair's one (PeerEndpoint.offer). */
  peerSocketOpened(socket: PeerMuxSocket): void {
    if (this.closed) return;
    this.inboundSockets.set(socket.peerId, socket);
    this.endpointById(socket.peerId)?.offer(socket);
  }

  /** A peer relay's multiplexed socket to this relay ended. */
  peerSocketClosed(socket: PeerMuxSocket): void {
    if (this.inboundSockets.get(socket.peerId) === socket) this.inboundSockets.delete(socket.peerId);
    for (const ep of this.endpoints) ep.withdraw(socket);
  }

  /** True if a peer has a link open to us for `name`. */
  hasInbound(name: string, peerId: string): boolean {
    return (this.inbound.get(name)?.get(peerId)?.size ?? 0) > 0;
  }

  /** A peer relay opened a document link to us. */
  inboundOpened(peerId: string, link: InboundPeerLink): void {
    const name = link.docName;
    let byPeer = this.inbound.get(name);
    if (!byPeer) this.inbound.set(name, (byPeer = new Map()));
    let set = byPeer.get(peerId);
    if (!set) byPeer.set(peerId, (set = new Set()));
    set.add(link);
    // Both sides opened a link at once: the smaller relay id's link stays.
    const ep = this.endpointById(peerId);
    const ours = ep ? this.links.get(name)?.get(ep) : undefined;
    if (ours && peerId < this.options.relayId) this.removeLink(name, ep!);
  }

  /**
   * A peer's document link to us closed: if this relay still needs the document for itself,
   * link it ourselves. Decided once the closing connection gave back its hold on the document.
   */
  inboundClosed(peerId: string, link: InboundPeerLink): void {
    const name = link.docName;
    const byPeer = this.inbound.get(name);
    const set = byPeer?.get(peerId);
    if (!set) return;
    set.delete(link);
    if (set.size === 0) byPeer!.delete(peerId);
    if (byPeer!.size === 0) this.inbound.delete(name);
    const ep = this.endpointById(peerId);
    if (!ep || !this.docs.has(name)) return;
    // The connection releases the document right after telling us (same turn).
    queueMicrotask(() => {
      if (this.closed || !this.docs.has(name) || !this.heldLocally(name)) return;
      this.ensureLink(name, ep);
    });
  }

  /**
   * True if something other than peer relays' links holds `name` in the registry: a client
   * connection, an HTTP request, a replicate-all sweep. (This relay's own outgoing links hold
   * nothing; each inbound peer link holds the document once.)
   */
  private heldLocally(name: string): boolean {
    let peerHolds = 0;
    for (const set of this.inbound.get(name)?.values() ?? []) peerHolds += set.size;
    return this.options.registry.holders(name) > peerHolds;
  }

  /**
   * Resolves once `doc` (loaded, held by the caller) has exchanged state vectors with `ep`
   * both ways on a live link, or once the peer holds a link to us for it (then the peer
   * syncs it). Used by replicate-all sweeps.
   */
  async syncWith(name: string, doc: RelayDoc, ep: PeerEndpoint): Promise<void> {
    if (!this.docs.has(name)) this.docs.set(name, doc);
    if (ep.id && this.hasInbound(name, ep.id)) return;
    this.ensureLink(name, ep);
    const link = this.links.get(name)?.get(ep);
    if (link) await link.whenConverged();
  }

  /** Sets the replication-lag gauges from the loaded documents (called before a metrics scrape). */
  refreshLagMetrics(): void {
    const { metrics } = this.options;
    const totals = new Map<string, { updates: number; bytes: number }>();
    for (const ep of this.endpoints) if (ep.id) totals.set(ep.id, { updates: 0, bytes: 0 });
    for (const doc of this.docs.values()) {
      for (const [peer, t] of totals) {
        const lag = doc.replication.lag(peer);
        t.updates += lag.updates;
        t.bytes += lag.bytes;
      }
    }
    metrics.replicationLagUpdates.reset();
    metrics.replicationLagBytes.reset();
    for (const [peer, t] of totals) {
      metrics.replicationLagUpdates.set({ peer }, t.updates);
      metrics.replicationLagBytes.set({ peer }, t.bytes);
    }
  }

  close(): void {
    this.closed = true;
    this.options.registry.off('loaded', this.onLoaded);
    this.options.registry.off('unloaded', this.onUnloaded);
    for (const ep of this.endpoints) ep.close();
    for (const name of Array.from(this.links.keys())) for (const ep of this.endpoints) this.removeLink(name, ep);
  }

  private readonly onLoaded = (name: string): void => {
    const pending = this.options.registry.peek(name);
    if (!pending) return;
    void pending.then(
      (doc) => {
        if (this.closed || this.options.registry.peek(name) !== pending) return;
        this.docs.set(name, doc);
        for (const ep of this.endpoints) this.ensureLink(name, ep);
      },
      () => {},
    );
  };

  private readonly onUnloaded = (name: string): void => {
    this.docs.delete(name);
    for (const ep of this.endpoints) this.removeLink(name, ep);
  };

  /** Opens a link for `name` to `ep` unless one exists either way. */
  private ensureLink(name: string, ep: PeerEndpoint): void {
    if (this.closed) return;
    const doc = this.docs.get(name);
    if (!doc) return;
    if (ep.id && this.hasInbound(name, ep.id)) return;
    let byEp = this.links.get(name);
    if (!byEp) this.links.set(name, (byEp = new Map()));
    const existing = byEp.get(ep);
    if (existing) {
      // A link whose connection ended is reopened now (a scheduled retry is brought forward).
      if (ep.up && !existing.connected) void existing.connect();
      return;
    }
    const { relayId, metrics, logger, sendBufferLimit, slowConsumerGraceMs, maxQueuedBytes } = this.options;
    const link = new PeerLink(ep, doc, { relayId, metrics, logger, sendBufferLimit, slowConsumerGraceMs, maxQueuedBytes, handshakeTimeoutMs: 5000, backoff: this.backoff });
    byEp.set(ep, link);
    metrics.peerDocLinks.inc();
    if (ep.up) void link.connect();
  }

  private removeLink(name: string, ep: PeerEndpoint): void {
    const byEp = this.links.get(name);
    const link = byEp?.get(ep);
    if (!link) return;
    byEp!.delete(ep);
    if (byEp!.size === 0) this.links.delete(name);
    link.close();
    this.options.metrics.peerDocLinks.dec();
  }

  private endpointById(id: string): PeerEndpoint | undefined {
    return this.endpoints.find((ep) => ep.id === id);
  }
}

