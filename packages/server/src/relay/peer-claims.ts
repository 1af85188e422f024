import type { ClientClaims } from '@capsync/core';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { ClientOwners } from './client-owners.js';

/** A recipient of claims: a document peer that is a peer relay's link. */
export interface ClaimsPeer {
  readonly peerRelayId?: string | undefined;
  /** Sends claims to the peer relay on the other end (before any content sent after it). */
  sendClaims?(claims: ClientClaims[]): void;
}

/**
 * Client id ownership across the mesh, for one document. A relay tells its peer relays who
 * owns the client ids it learns owners of, on the same link and before the content written
 * under them, so that a peer holding a user's structs also knows they are hers, and refuses
 * anyone else writing under her id there:
 * - a claim this relay commits (or learns from one peer) is queued and sent to every peer
 *   relay link right before the broadcast that carries the content (`flush`, from the
 *   document's broadcast flush): bounded by what the update claimed, never the document;
 * - a sync step 2 to a peer relay is preceded by the document's claims (`forSync`), so a link
 *   that was down when a claim was made catches up with the content, and conflicts show.
 * The receiver records them before it applies the content that follows (`learn`), and its
 * acks of that content wait for their commit (`durable`).
 *
 * Conflicts (an id claimed on two relays for different identities while they could not reach
 * each other) are detected, not prevented: each relay keeps its first claim, both keep serving
 * the content, and the conflict is counted (`capsync_client_owner_conflicts_total`) and logged.
 */
export class PeerClaims {
  private queued: { claims: ClientClaims[]; from: ClaimsPeer | null }[] = [];
  /** The latest commit of learned claims, while it runs. */
  private learning: Promise<void> | null = null;

  constructor(
    private readonly name: string,
    private readonly owners: ClientOwners,
    private readonly metrics: Pick<RelayMetrics, 'clientOwnerConflicts'>,
    private readonly logger: Logger,
  ) {}

  /** A claim this relay committed (or is committing): peers are told before its content. */
  announce(owner: string, clientIds: number[]): void {
    this.queued.push({ claims: [{ owner, clientIds }], from: null });
  }

  /**
   * Claims a peer relay sent (`from`): recorded at once, committed in the background (see
   * `durable`), and passed on to the other peer relays. Returns the claims that were new here.
   */
  learn(claims: ClientClaims[], from: ClaimsPeer): ClientClaims[] {
    const learned = this.owners.learn(claims);
    if (learned.conflicts > 0) {
      this.metrics.clientOwnerConflicts.inc(learned.conflicts);
      this.logger.warn(
        { doc: this.name, peer: from.peerRelayId, conflicts: learned.conflicts },
        'a peer relay says other identities own client ids owned here (claimed on both sides of a partition); both keep their first claim',
      );
    }
    if (learned.fresh.length === 0) return [];
    this.queued.push({ claims: learned.fresh, from });
    const run: Promise<void> = Promise.all([this.learning, learned.persisted]).then(() => {
      if (this.learning === run) this.learning = null;
    });
    this.learning = run;
    return learned.fresh;
  }

  /**
   * Resolves once every claim learned so far is committed; null when none is in flight.
   * Content applied after claims arrived is acknowledged only after this.
   */
  get durable(): Promise<void> | null {
    return this.learning;
  }

  /** Sends the queued claims to every peer relay link (but the one each came from). */
  flush(peers: Iterable<ClaimsPeer>): void {
    if (this.queued.length === 0) return;
    const queued = this.queued;
    this.queued = [];
    for (const peer of peers) {
      if (peer.peerRelayId === undefined || !peer.sendClaims) continue;
      const claims = queued.filter((q) => q.from !== peer).flatMap((q) => q.claims);
      if (claims.length > 0) peer.sendClaims(claims);
    }
  }

  /** The claims to send before a sync step 2 to a peer relay (see ClientOwners.all). */
  forSync(): ClientClaims[] {
    return this.owners.all();
  }
}
