import * as Y from 'yjs';
import { NotOwnerError, type CapsyncError, type ClientClaims } from '@capsync/core';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { ClientOwners } from './client-owners.js';
import type { UpdateSource } from './origins.js';
import type { PendingUpdates, Sent } from './pending-updates.js';
import type { Admission } from './update-admission.js';

/** Client ids per `client-owners` message of a sync (at most ~50 bytes each with its owner). */
const CLAIMS_PER_MESSAGE = 10_000;

/** A recipient of claims: a document peer that is a peer relay's link. */
export interface ClaimsPeer {
  readonly peerRelayId?: string | undefined;
  /** Sends claims to the peer relay on the other end (before any content sent after it). */
  sendClaims?(claims: ClientClaims[]): void;
}

/**
 * Client id ownership of one document as updates are applied: claims made by what integrated
 * (`claimApplied`, and `claimLate` for content that waited for dependencies), another
 * identity's waiting content evicted before it could integrate under a claimed id
 * (`evictFor`, see PendingUpdates.evict), and the exchange with peer relays below.
 *
 * Across the mesh: a relay tells its peer relays who
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
export class DocOwnership {
  private queued: { claims: ClientClaims[]; from: ClaimsPeer | null }[] = [];
  /** The latest commit of learned claims, while it runs. */
  private learning: Promise<void> | null = null;

  constructor(
    private readonly name: string,
    readonly owners: ClientOwners,
    private readonly metrics: Pick<RelayMetrics, 'clientOwnerConflicts'>,
    private readonly logger: Logger,
  ) {}

  /**
   * Before `admission`'s update is applied: refuses waiting content of other identities under
   * the ids it claims, and returns the updates the caller must apply again (PendingUpdates.evict).
   */
  evictFor(admission: Admission, pending: PendingUpdates): Uint8Array[] {
    return admission.claims ? pending.evict(admission.claims.owner, admission.claims.clientIds) : [];
  }

  /** Each claimed, then each carried, id's state before the apply (see `claimApplied`). */
  statesBefore(doc: Y.Doc, admission: Admission): number[] {
    if (!admission.claims && !admission.carried) return [];
    return [...(admission.claims?.clientIds ?? []), ...(admission.carried?.clientIds ?? [])].map((id) => Y.getState(doc.store, id));
  }

  /**
   * After `admission`'s update (from `source`) was applied: claims the ids under which its
   * content integrated (a struct held back as pending, say at a far clock of someone else's
   * id, must not let its sender squat on that id), records the carried ones that integrated
   * (ClientOwners.carry), tells peers of the claims before the broadcast, counts the ids a
   * writer without identity introduced. Resolves once the claims and carried records, and
   * claims learned from peers before, are committed: the update's ack waits for it. Null when
   * there are none.
   */
  claimApplied(doc: Y.Doc, admission: Admission, source: UpdateSource, statesBefore: number[]): Promise<void> | null {
    if (admission.fresh > 0 && typeof admission.sent?.writer.identity !== 'string') this.owners.recordIntroduced(source, admission.fresh);
    const advanced = (ids: number[] | undefined, offset: number): number[] => ids?.filter((id, i) => Y.getState(doc.store, id) > statesBefore[offset + i]!) ?? [];
    const claimIds = advanced(admission.claims?.clientIds, 0);
    const carriedIds = advanced(admission.carried?.clientIds, admission.claims?.clientIds.length ?? 0);
    const commits: Promise<void>[] = [];
    if (claimIds.length > 0) {
      commits.push(this.owners.claim(admission.claims!.owner, claimIds));
      this.announce(admission.claims!.owner, claimIds);
    }
    if (carriedIds.length > 0) commits.push(this.owners.carry(admission.carried!.owner, carriedIds));
    // Content a peer relay sent after claims waits for their commit too.
    if (this.learning) commits.push(this.learning);
    if (commits.length === 0) return null;
    return commits.length === 1 ? commits[0]! : Promise.all(commits).then(() => {});
  }

  /**
   * Content that waited for dependencies integrated: its sender must own the ids it wrote under
   * as the claims are now (PendingUpdates.evict keeps this from failing), claims those nobody
   * owns that it declared, and records as carried those new to the document it did not
   * declare. For PendingUpdates' `lateClaim`.
   */
  claimLate(sent: Sent): Promise<void> | CapsyncError | null {
    const identity = sent.writer.identity;
    if (sent.writer.trusted || identity === null) return null;
    const declared = sent.writer.declared;
    const mine: number[] = [];
    const carried: number[] = [];
    for (const id of sent.unowned) {
      const owner = this.owners.get(id);
      if (owner !== undefined && owner !== identity) return new NotOwnerError(`client id ${id} belongs to another identity; write under your own client id`);
      if (owner !== undefined) continue;
      if (declared === undefined || declared.has(id)) mine.push(id);
      else if (sent.carried.includes(id)) carried.push(id);
    }
    if (identity === undefined || (mine.length === 0 && carried.length === 0)) return null;
    const commits: Promise<void>[] = [this.owners.carry(identity, carried)];
    if (mine.length > 0) {
      this.announce(identity, mine);
      commits.push(this.owners.claim(identity, mine));
    }
    return Promise.all(commits).then(() => {});
  }

  /** A claim this relay committed (or is committing): peers are told before its content. */
  private announce(owner: string, clientIds: number[]): void {
    this.queued.push({ claims: [{ owner, clientIds }], from: null });
  }

  /**
   * Claims a peer relay sent (`from`): recorded at once, committed in the background (content
   * applied after them is acknowledged only once they are, see `claimApplied`), and passed on to
   * the other peer relays. Evicts other identities' waiting content under them; returns the
   * updates the caller must apply again (see `evictFor`), or null when nothing was new.
   */
  /**
   * Claims another relay of the cluster committed to the store they share (ClusterFollower):
   * recorded at once, not written again, not passed on (every relay of the cluster hears of them
   * from the store). Ids owned here by someone else keep their owner and count as conflicts.
   * Evicts other identities' waiting content under them; returns the updates to apply again.
   */
  learnCommitted(claims: ClientClaims[], pending: PendingUpdates): Uint8Array[] {
    const learned = this.owners.learn(claims, true);
    if (learned.conflicts > 0) {
      this.metrics.clientOwnerConflicts.inc(learned.conflicts);
      this.logger.warn({ doc: this.name, conflicts: learned.conflicts }, 'another relay of the cluster committed claims on client ids owned here by other identities; both keep their first claim');
    }
    return learned.fresh.flatMap((c) => pending.evict(c.owner, c.clientIds));
  }

  learn(claims: ClientClaims[], from: ClaimsPeer, pending: PendingUpdates): Uint8Array[] | null {
    const learned = this.owners.learn(claims);
    if (learned.conflicts > 0) {
      this.metrics.clientOwnerConflicts.inc(learned.conflicts);
      this.logger.warn(
        { doc: this.name, peer: from.peerRelayId, conflicts: learned.conflicts },
        'a peer relay says other identities own client ids owned here (claimed on both sides of a partition); both keep their first claim',
      );
    }
    if (learned.fresh.length === 0) return null;
    this.queued.push({ claims: learned.fresh, from });
    const run: Promise<void> = Promise.all([this.learning, learned.persisted]).then(() => {
      if (this.learning === run) this.learning = null;
    });
    this.learning = run;
    return learned.fresh.flatMap((c) => pending.evict(c.owner, c.clientIds));
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

  /**
   * The claims to send before a sync step 2 to a peer relay (see ClientOwners.all), in
   * messages of at most `CLAIMS_PER_MESSAGE` client ids, so none nears the message size cap.
   */
  forSync(): ClientClaims[][] {
    const messages: ClientClaims[][] = [];
    let current: ClientClaims[] = [];
    let ids = 0;
    for (const { owner, clientIds } of this.owners.all()) {
      for (let i = 0; i < clientIds.length; i += CLAIMS_PER_MESSAGE) {
        const part = clientIds.slice(i, i + CLAIMS_PER_MESSAGE);
        if (ids + part.length > CLAIMS_PER_MESSAGE) {
          messages.push(current);
          current = [];
          ids = 0;
        }
        current.push({ owner, clientIds: part });
        ids += part.length;
      }
    }
    if (current.length > 0) messages.push(current);
    return messages;
  }
}
