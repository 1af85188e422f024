import type { DocStore } from '@capsync/core';
import type { Logger } from '../logger.js';

/**
 * Who owns which Yjs client id of one document: the first identity (token `sub`) that wrote
 * under it, on a relay with auth. Loaded with the document and kept in memory for the
 * synchronous admission check (`admitUpdate`); every claim is also persisted through
 * `DocStore.claimClients`, so ownership survives unloading and restarts. Bounded by the
 * document's client id cap (`--max-clients-per-doc`).
 *
 * Owners are identities (strings), which is what history attribution rests on.
 */
export class ClientOwners {
  private constructor(
    private readonly name: string,
    private readonly owners: Map<number, string>,
    private readonly store: DocStore,
    private readonly logger: Logger,
  ) {}

  static async load(name: string, store: DocStore, logger: Logger): Promise<ClientOwners> {
    return new ClientOwners(name, new Map(await store.loadClientOwners(name)), store, logger);
  }

  /** The owner of `clientId`, or undefined when nobody owns it. */
  get(clientId: number): string | undefined {
    return this.owners.get(clientId);
  }

  /**
   * Records `owner` for `clientIds` at once (later updates of the same turn see it) and
   * persists it. Called before the update that made the claims is appended, so the store
   * commits the claims no later than the update (`DocStore.claimClients` orders them): an
   * acknowledged update's claims are durable. Rejects with StorageError.
   */
  claim(owner: string, clientIds: number[]): Promise<void> {
    for (const id of clientIds) if (!this.owners.has(id)) this.owners.set(id, owner);
    return this.store.claimClients(this.name, owner, clientIds).then((conflicts) => {
      // Only another process sharing the store can have claimed in between (this relay checked
      // its own map first): the store's first claim is what counts from the next load on.
      if (conflicts.length > 0) this.logger.warn({ doc: this.name, conflicts: conflicts.length }, 'client ids were claimed by another identity in storage meanwhile');
    });
  }
}
