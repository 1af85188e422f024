import { MAX_DECLARED_WRITERS, NotOwnerError, type ClientClaimConflict, type ClientClaims, type DocStore } from '@capsync/core';
import type { Logger } from '../logger.js';
import { AwarenessReservations } from './awareness-reservations.js';
import type { StorageRetries } from './storage-retries.js';

/**
 * Declared ids whose connection left, held for their identity a while (see `release`), per
 * document: past it the oldest go first (pushing out someone else's takes this many
 * identities leaving within the grace period).
 */
const MAX_RELEASED_HOLDS = 1000;

/** What `ClientOwners.learn` made of the claims a peer relay sent. */
export interface Learned {
  /** The claims that were new here, recorded in memory (to pass on to other peers). */
  fresh: ClientClaims[];
  /** Client ids this relay already had with another owner (first claim wins here), each counted once. */
  conflicts: number;
  /** Resolves once `fresh` is committed to storage; rejects with StorageError. */
  persisted: Promise<void>;
}

/**
 * Who owns which Yjs client id of one document: the first identity (token `sub`) that wrote
 * under it, on a relay with auth, or the owner a peer relay of the mesh said it has (`learn`).
 * Loaded with the document and kept in memory for the synchronous admission check
 * (`admitUpdate`); every claim is also persisted through `DocStore.claimClients`, so
 * ownership survives unloading and restarts. Bounded by the document's client id cap
 * (`--max-clients-per-doc`). Also counts, per identity, the ids it owns and the ids it
 * carried (`carry`), for `--max-clients-per-identity`.
 *
 * Carried ids: ids new to the document that an identity introduced without declaring them
 * (someone else's edits its client carries, see WRITES_PREFIX). They are not its own (the
 * author may still claim them) but count against its budget, or anyone could fill
 * `--max-clients-per-doc` by declaring one id and carrying the rest. They are recorded with
 * the claims, durably, as a claim of the id's complement `-1 - id` (`CARRIED`), which no Yjs
 * client id can be: so the budget survives restarts and unloading as the claims do, and the
 * author's later claim of the id itself never conflicts with the record.
 *
 * Owners are identities (strings), which is what history attribution rests on.
 */
export class ClientOwners {
  /** Per identity, the ids it owns plus those it carried that nobody owns (its budget spent). */
  private readonly perOwner = new Map<string, number>();
  /** Ids new to the document an identity introduced without declaring them, nobody owns yet (see `carry`). */
  private readonly carried = new Map<number, string>();
  /** Client ids each connection introduced, where there is no identity to count them against. */
  private readonly introduced = new WeakMap<object, number>();
  /** Ids a peer relay said someone else owns, already counted as conflicts (counted once each). */
  private readonly conflicted = new Set<number>();
  /**
   * Ids a connected client declared it writes under (`writes:` in its hello) before writing:
   * held for its identity while a connection that declared it is on the document (see `announce`).
   */
  private readonly announced = new Map<number, { owner: string; holders: Set<object> }>();
  /** The ids each connection holds (what its hello declared and it has not written yet). */
  private readonly heldBy = new Map<object, Set<number>>();
  /**
   * Held ids whose connection left: still their identity's for a grace period (`release`).
   * The same bounded, expiring per-identity id reservation as freed presence ids, so a user's
   * reconnect after a blip finds her unwritten id still hers.
   */
  private readonly released = new AwarenessReservations({ perDoc: MAX_RELEASED_HOLDS, perIdentity: MAX_DECLARED_WRITERS, perAddress: Infinity });

  private readonly owners = new Map<number, string>();

  private constructor(
    private readonly name: string,
    records: [number, string][],
    private readonly store: DocStore,
    private readonly logger: Logger,
    private readonly retries: StorageRetries,
  ) {
    for (const [id, owner] of records) if (id >= 0) this.set(id, owner);
    for (const [id, carrier] of records) if (id < 0) this.setCarried(CARRIED(id), carrier);
  }

  /** Loads the recorded owners of `name`; its claims are written through `retries` (storage that cannot be reached). */
  static async load(name: string, store: DocStore, logger: Logger, retries: StorageRetries): Promise<ClientOwners> {
    return new ClientOwners(name, await store.loadClientOwners(name), store, logger, retries);
  }

  /** The owner of `clientId`, or undefined when nobody owns it. */
  get(clientId: number): string | undefined {
    return this.owners.get(clientId);
  }

  /**
   * Holds `clientIds`, which a writing client of `owner` declared in the (one) hello of its
   * connection `holder`, for `owner` until it writes under them (then `claim` makes it durable)
   * or `holder` leaves the document (then `release` keeps them its identity's a while longer).
   * Why: a Yjs client id is public from the moment its presence is shown, before its first
   * edit; without this, anyone could write one struct under a newcomer's id first and own it,
   * and every edit of the newcomer would be refused. The hello comes before the client's
   * presence, so nobody can learn the id earlier. First announcement wins (another connection of
   * the same identity, a reconnect or a tab uploading another tab's edits, holds it too, and it
   * is held until the last of them leaves); ids someone owns are left alone.
   *
   * Not durable and not counted in `budgetOf` (a session that never writes costs nothing); not
   * passed to peer relays (a squat through another relay of a mesh stays possible). Bounded by
   * the connections themselves: at most MAX_DECLARED_WRITERS per connection (what a hello
   * declares), one declaration per connection, and gone when the connection leaves. There is
   * no per-document pool to fill: a pool that, once full, held nothing more let ten accounts'
   * short connections make every newcomer's id takeable again.
   */
  announce(owner: string, clientIds: Iterable<number>, holder: object): void {
    if (this.heldBy.has(holder)) return;
    const held = new Set<number>();
    for (const id of clientIds) {
      if (held.size >= MAX_DECLARED_WRITERS) break;
      if (this.owners.has(id)) continue;
      const hold = this.announced.get(id);
      if (hold !== undefined) {
        if (hold.owner !== owner) continue;
        hold.holders.add(holder);
      } else {
        const reservedFor = this.released.holder(id);
        if (reservedFor !== undefined && reservedFor !== owner) continue;
        this.released.release(id);
        this.announced.set(id, { owner, holders: new Set([holder]) });
      }
      held.add(id);
    }
    if (held.size > 0) this.heldBy.set(holder, held);
  }

  /**
   * `holder` left the document: the ids it held that no other connection holds stay their
   * identity's for RESERVATION_MS (a reconnect declares them again and takes them back), at
   * most MAX_DECLARED_WRITERS per identity (its own oldest go first) and MAX_RELEASED_HOLDS
   * per document, then are free. Costs what the connection held.
   */
  release(holder: object): void {
    const held = this.heldBy.get(holder);
    if (held === undefined) return;
    this.heldBy.delete(holder);
    for (const id of held) {
      const hold = this.announced.get(id)!;
      hold.holders.delete(holder);
      if (hold.holders.size > 0) continue;
      this.announced.delete(id);
      this.released.reserve(id, { identity: hold.owner });
    }
  }

  /** The identity that announced `clientId` (see `announce`, `release`), if nobody owns it yet. */
  announcedBy(clientId: number): string | undefined {
    return this.announced.get(clientId)?.owner ?? this.released.holder(clientId);
  }

  /**
   * How many client ids of the document count against `owner`'s `--max-clients-per-identity`:
   * those it owns and those it carried (see `carry`) that nobody owns.
   */
  budgetOf(owner: string): number {
    return this.perOwner.get(owner) ?? 0;
  }

  /**
   * Records that `carrier` introduced `clientIds` (new to the document, integrated) without
   * declaring them: they count against its budget until someone claims them (see the class
   * doc). Ids owned or carried already are skipped. In memory at once, then persisted like a
   * claim (resolves once committed; rejects with StorageError).
   */
  carry(carrier: string, clientIds: number[]): Promise<void> {
    const fresh = clientIds.filter((id) => !this.owners.has(id) && !this.carried.has(id));
    for (const id of fresh) this.setCarried(id, carrier);
    return fresh.length > 0 ? this.persist(carrier, fresh.map(CARRIED)).then(() => {}) : Promise.resolve();
  }

  /** How many client ids `source` (a connection without identity) introduced to the document. */
  introducedBy(source: object): number {
    return this.introduced.get(source) ?? 0;
  }

  /** Counts `n` client ids `source` introduced (see `introducedBy`). */
  recordIntroduced(source: object, n: number): void {
    if (n > 0) this.introduced.set(source, this.introducedBy(source) + n);
  }

  /**
   * Records `owner` for `clientIds` at once (later updates of the same turn see it) and
   * persists it. Called before the update that made the claims is appended, so the store
   * commits the claims no later than the update (`DocStore.claimClients` orders them): an
   * acknowledged update's claims are durable. Rejects with StorageError; and with
   * NotOwnerError when the store says another identity claimed one of the ids first (another
   * relay sharing the store, before its claim reached this one): the update is then never
   * acknowledged, and this relay takes the store's owner from now on.
   */
  claim(owner: string, clientIds: number[]): Promise<void> {
    for (const id of clientIds) this.set(id, owner);
    return this.persist(owner, clientIds).then((conflicts) => {
      if (conflicts.length === 0) return;
      for (const c of conflicts) this.set(c.clientId, c.owner);
      throw new NotOwnerError('another identity owns a client id you wrote under; write under your own client id');
    });
  }

  /**
   * Claims a peer relay says it has. Ids nobody owns here are recorded (in memory at once,
   * then in storage); ids owned here by someone else keep their owner (first claim wins on
   * each relay) and are counted as conflicts: two relays accepted the same id from different
   * identities while they could not reach each other. Costs what the claims hold. `stored`:
   * the claims were read from (or noted by) the store this relay shares: not written again.
   */
  learn(claims: ClientClaims[], stored = false): Learned {
    const fresh: ClientClaims[] = [];
    let conflicts = 0;
    for (const { owner, clientIds } of claims) {
      const ids: number[] = [];
      for (const id of clientIds) {
        if (id < 0) continue; // carried records are this relay's own (see CARRIED), never a peer's
        const current = this.owners.get(id);
        if (current === undefined) {
          this.set(id, owner);
          ids.push(id);
        } else if (current !== owner && !this.conflicted.has(id)) {
          this.conflicted.add(id);
          conflicts++;
        }
      }
      if (ids.length > 0) fresh.push({ owner, clientIds: ids });
    }
    const persisted = stored ? Promise.resolve() : Promise.all(fresh.map((c) => this.persist(c.owner, c.clientIds))).then(() => {});
    // (A peer's claim the store already holds for someone else: logged by persist; both keep their first claim.)
    return { fresh, conflicts, persisted };
  }

  /**
   * Every claim of the document, by owner: sent to a peer relay with every sync step 2. All
   * of them, not only those on the ids the step 2 carries: two relays that each accepted the
   * same id and clocks from a different identity during a partition have equal state vectors
   * there, and only the claims show it. Costs what the document's client ids hold (bounded by
   * `--max-clients-per-doc`), like the step 2 itself, and only when a peer link (re)connects.
   */
  all(): ClientClaims[] {
    const byOwner = new Map<string, number[]>();
    for (const [client, owner] of this.owners) {
      const ids = byOwner.get(owner);
      if (ids) ids.push(client);
      else byOwner.set(owner, [client]);
    }
    return Array.from(byOwner, ([owner, clientIds]) => ({ owner, clientIds }));
  }

  private set(id: number, owner: string): void {
    if (this.owners.has(id)) return;
    this.unannounce(id);
    const carrier = this.carried.get(id);
    if (carrier !== undefined) {
      // Its author claimed it: it counts against the author's budget, not the carrier's.
      this.carried.delete(id);
      this.perOwner.set(carrier, this.perOwner.get(carrier)! - 1);
    }
    this.owners.set(id, owner);
    this.perOwner.set(owner, (this.perOwner.get(owner) ?? 0) + 1);
  }

  private setCarried(id: number, carrier: string): void {
    if (this.owners.has(id) || this.carried.has(id)) return;
    this.carried.set(id, carrier);
    this.perOwner.set(carrier, (this.perOwner.get(carrier) ?? 0) + 1);
  }

  private unannounce(id: number): void {
    this.released.release(id);
    const hold = this.announced.get(id);
    if (hold === undefined) return;
    this.announced.delete(id);
    for (const holder of hold.holders) {
      const held = this.heldBy.get(holder)!;
      held.delete(id);
      if (held.size === 0) this.heldBy.delete(holder);
    }
  }

  private persist(owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    return this.retries.run(() => this.store.claimClients(this.name, owner, clientIds)).then((conflicts) => {
      // Only another process sharing the store can have claimed in between (this relay checked
      // its own map first): the store's first claim is what counts from the next load on.
      if (conflicts.length > 0) this.logger.warn({ doc: this.name, conflicts: conflicts.length }, 'client ids were claimed by another identity in storage meanwhile');
      return conflicts;
    });
  }
}

/**
 * The stored form of a carried client id (see ClientOwners): its complement, a negative
 * number no Yjs client id can be. Its own inverse.
 */
function CARRIED(id: number): number {
  return -1 - id;
}
