/**
 * Whether the relay can give quorum durability now. Without a mesh, a relay alone has no
 * majority to wait for; in a cluster (relays sharing PostgreSQL) quorum means committed with
 * PostgreSQL's synchronous replication, which only the database can say it does. A relay that
 * cannot give it refuses a quorum barrier at once with 'quorum-unsupported' (ClientSessionHost)
 * instead of answering it as if its own commit were a quorum: never a silent downgrade.
 */
export interface QuorumSupport {
  /** Why quorum durability cannot be given now, or null when it can (or cannot be told: then the wait decides). */
  refusal(): Promise<string | null>;
}

/** What a store shared by a cluster says of its replication (SharedDocStore.synchronousReplication). */
export interface ReplicationStatus {
  synchronousReplication(): Promise<string | null>;
}

/**
 * A cluster relay's QuorumSupport: asks the database, and keeps the answer a few seconds (a
 * standby that connects or leaves is seen within `ttlMs`), so a client flushing with quorum
 * after every edit costs no query each. A failed question (the database cannot be reached) is
 * not kept and refuses nothing: the barrier then waits, and its flush times out as unavailable.
 */
export class SyncReplicationCheck implements QuorumSupport {
  private answer: { reason: string | null; at: number } | null = null;
  private asking: Promise<string | null> | null = null;

  constructor(
    private readonly store: ReplicationStatus,
    private readonly ttlMs = 5_000,
  ) {}

  refusal(): Promise<string | null> {
    if (this.answer && performance.now() - this.answer.at < this.ttlMs) return Promise.resolve(this.answer.reason);
    this.asking ??= this.store
      .synchronousReplication()
      .then(
        (reason) => {
          this.answer = { reason, at: performance.now() };
          return reason;
        },
        () => null,
      )
      .finally(() => (this.asking = null));
    return this.asking;
  }
}
