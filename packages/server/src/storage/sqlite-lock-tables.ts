import type Database from 'better-sqlite3';
import { StorageError } from '@capsync/core';
import type { LockStore, PersistedLease } from '../locks/lock-store.js';

/**
 * The embedded lock authority's tables, in the relay's SQLite database (so one file holds
 * everything and one backup covers it). Each call is its own transaction, committed with the
 * database's synchronous setting before it returns.
 */
export class SqliteLockTables implements LockStore {
  private readonly stmts;
  private readonly grantTx;

  constructor(private readonly db: Database.Database) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS lock_tokens (
        key TEXT PRIMARY KEY,
        last_token INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS lock_leases (
        key TEXT PRIMARY KEY,
        token INTEGER NOT NULL,
        owner TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `);
    this.stmts = {
      nextToken: db.prepare<[string], { last_token: number }>(
        `INSERT INTO lock_tokens (key, last_token) VALUES (?, 1)
         ON CONFLICT (key) DO UPDATE SET last_token = last_token + 1
         RETURNING last_token`,
      ),
      putLease: db.prepare<[string, number, string, number]>(
        `INSERT INTO lock_leases (key, token, owner, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET token = excluded.token, owner = excluded.owner, expires_at = excluded.expires_at`,
      ),
      renew: db.prepare<[number, string, number]>('UPDATE lock_leases SET expires_at = ? WHERE key = ? AND token = ?'),
      end: db.prepare<[string, number]>('DELETE FROM lock_leases WHERE key = ? AND token = ?'),
      leases: db.prepare<[], { key: string; token: number; owner: string; expires_at: number }>('SELECT key, token, owner, expires_at FROM lock_leases'),
      tokens: db.prepare<[], { key: string; last_token: number }>('SELECT key, last_token FROM lock_tokens'),
    };
    this.grantTx = db.transaction((key: string, owner: string, expiresAt: number): number => {
      const token = this.stmts.nextToken.get(key)!.last_token;
      this.stmts.putLease.run(key, token, owner, expiresAt);
      return token;
    });
  }

  async loadLocks(): Promise<{ leases: PersistedLease[]; lastTokens: [string, number][] }> {
    return this.run('loading locks', () => ({
      leases: this.stmts.leases.all().map((r) => ({ key: r.key, token: r.token, owner: r.owner, expiresAt: r.expires_at })),
      lastTokens: this.stmts.tokens.all().map((r): [string, number] => [r.key, r.last_token]),
    }));
  }
  async grant(key: string, owner: string, expiresAt: number): Promise<number> {
    return this.run('granting a lock', () => this.grantTx(key, owner, expiresAt));
  }
  async renew(key: string, token: number, expiresAt: number): Promise<void> {
    this.run('renewing a lease', () => this.stmts.renew.run(expiresAt, key, token));
  }
  async end(key: string, token: number): Promise<void> {
    this.run('ending a lease', () => this.stmts.end.run(key, token));
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw new StorageError(`${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}
