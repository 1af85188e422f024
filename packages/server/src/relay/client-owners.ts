import type { ClientClaims, DocStore } from '@capsync/core';
import type { Logger } from '../logger.js';

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
 * (`--max-clients-per-doc`). Also counts the ids each identity owns, for
 * `--max-clients-per-identity`.
 *
 * Owners are identities (strings), which is what history attribution rests on.
 */
export class ClientOwners {
  private readonly perOwner = new Map<string, number>();
  /** Client ids each connection introduced, where there is no identity to count them against. */
  private readonly introduced = new WeakMap<object, number>();
  /** Ids a peer relay said someone else owns, already counted as conflicts (counted once each). */
  private readonly conflicted = new Set<number>();
  /**
   * Ids a connected client declared it writes under (`writes:` in its hello) before writing:
   * held for its identity in memory (see `announce`). Oldest first, for the bound.
   */
  private readonly announced = new Map<number, string>();

  private constructor(
    private readonly name: string,
    private readonly owners: Map<number, string>,
    private readonly store: DocStore,
    private readonly logger: Logger,
  ) {
    for (const owner of owners.values()) this.perOwner.set(owner, (this.perOwner.get(owner) ?? 0) + 1);
  }

  static async load(name: string, store: DocStore, logger: Logger): Promise<ClientOwners> {
    return new ClientOwners(name, new Map(await store.loadClientOwners(name)), store, logger);
  }

  /** The owner of `clientId`, or undefined when nobody owns it. */
  get(clientId: number): string | undefined {
    return this.owners.get(clientId);
  }

  /**
   * Holds `clientIds`, which a client of `owner` declared in its hello, for `owner` until it
   * writes under them (then `claim` makes it durable) or the document is unloaded. Why: a Yjs
   * client id is public from the moment its presence is shown, before its first edit; without
   * this, anyone could write one struct under a newcomer's id first and own it, and every edit
   * of the newcomer would be refused. The hello comes before the client's presence, so nobody
   * can learn the id earlier. First announcement wins; ids someone owns are left alone. Not
   * durable and not counted in `countOf` (a session that never writes costs nothing); not
   * passed to peer relays (a squat through another relay of a mesh stays possible). Bounded by
   * `max` (the oldest goes first).
   */
  announce(owner: string, clientIds: Iterable<number>, max: number): void {
    for (const id of clientIds) {
      if (this.owners.has(id) || this.announced.has(id)) continue;
      this.announced.set(id, owner);
      if (this.announced.size > max) this.announced.delete(this.announced.keys().next().value!);
    }
  }

  /** The identity that announced `clientId` (see `announce`), if nobody owns it yet. */
  announcedBy(clientId: number): string | undefined {
    return this.announced.get(clientId);
  }

  /** How many client ids of the document `owner` owns. */
  countOf(owner: string): number {
    return this.perOwner.get(owner) ?? 0;
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
   * acknowledged update's claims are durable. Rejects with StorageError.
   */
  claim(owner: string, clientIds: number[]): Promise<void> {
    for (const id of clientIds) this.set(id, owner);
    return this.persist(owner, clientIds);
  }

  /**
   * Claims a peer relay says it has. Ids nobody owns here are recorded (in memory at once,
   * then in storage); ids owned here by someone else keep their owner (first claim wins on
   * each relay) and are counted as conflicts: two relays accepted the same id from different
   * identities while they could not reach each other. Costs what the claims hold.
   */
  learn(claims: ClientClaims[]): Learned {
    const fresh: ClientClaims[] = [];
    let conflicts = 0;
    for (const { owner, clientIds } of claims) {
      const ids: number[] = [];
      for (const id of clientIds) {
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
    const persisted = Promise.all(fresh.map((c) => this.persist(c.owner, c.clientIds))).then(() => {});
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
    this.announced.delete(id);
    this.owners.set(id, owner);
    this.perOwner.set(owner, (this.perOwner.get(owner) ?? 0) + 1);
  }

  private persist(owner: string, clientIds: number[]): Promise<void> {
    return this.store.claimClients(this.name, owner, clientIds).then((conflicts) => {
      // Only another process sharing the store can have claimed in between (this relay checked
      // its own map first): the store's first claim is what counts from the next load on.
      if (conflicts.length > 0) this.logger.warn({ doc: this.name, conflicts: conflicts.length }, 'client ids were claimed by another identity in storage meanwhile');
    });
  }
}
