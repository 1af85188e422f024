/** A lease as the embedded lock authority persists it. */
export interface PersistedLease {
  key: string;
  token: number;
  owner: string;
  /** Wall-clock expiry (ms since epoch): the only clock that means anything across a restart. */
  expiresAt: number;
}

/**
 * Durable state of the embedded lock authority: the last token handed out per key and the
 * live leases. Every method resolves only once its change is committed (fsynced with the
 * relay's default SQLite settings), so a grant is never answered before it would survive a
 * crash, and a restart never reuses or lowers a token. `lockStoreConformance`
 * (`@capsync/server/conformance`, lock-store-conformance.ts) checks this contract; MemoryLockStore,
 * SqliteLockTables and SqliteWorkerStore's `locks` run it.
 */
export interface LockStore {
  /** Everything needed to resume after a restart. */
  loadLocks(): Promise<{ leases: PersistedLease[]; lastTokens: [key: string, token: number][] }>;
  /**
   * Atomically takes the key's next token (last + 1, starting at 1) and records the lease
   * (replacing any previous lease row of the key). Resolves with the token once committed.
   */
  grant(key: string, owner: string, expiresAt: number): Promise<number>;
  /** Moves the lease's expiry, if the key's lease row still has `token`. */
  renew(key: string, token: number, expiresAt: number): Promise<void>;
  /** Deletes the key's lease row if it has `token` (released or expired). Tokens stay. */
  end(key: string, token: number): Promise<void>;
}

/** A LockStore in memory: for `storage: 'memory'` relays and tests. Nothing survives a restart. */
export class MemoryLockStore implements LockStore {
  private readonly tokens = new Map<string, number>();
  private readonly leases = new Map<string, PersistedLease>();

  async loadLocks(): Promise<{ leases: PersistedLease[]; lastTokens: [string, number][] }> {
    return { leases: Array.from(this.leases.values(), (l) => ({ ...l })), lastTokens: Array.from(this.tokens.entries()) };
  }
  async grant(key: string, owner: string, expiresAt: number): Promise<number> {
    const token = (this.tokens.get(key) ?? 0) + 1;
    this.tokens.set(key, token);
    this.leases.set(key, { key, token, owner, expiresAt });
    return token;
  }
  async renew(key: string, token: number, expiresAt: number): Promise<void> {
    const lease = this.leases.get(key);
    if (lease?.token === token) lease.expiresAt = expiresAt;
  }
  async end(key: string, token: number): Promise<void> {
    if (this.leases.get(key)?.token === token) this.leases.delete(key);
  }
}
