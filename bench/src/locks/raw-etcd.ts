/**
 * The peer of the etcd backend: the etcd3 client (default options) straight on the same
 * cluster, in the bench process, doing what a lock with a fencing token needs.
 *
 * - `raw-etcd`: exactly the etcd calls the etcd backend (packages/server/src/locks/etcd-backend.ts,
 *   through etcd-fault-handling.ts) makes for one uncontended acquire + release, in the same
 *   order and shape: acquire = LeaseGrant(TTL) ; Txn(if create_revision(lock key) == 0 then
 *   put lock key on the lease + put the "last token" key, else range lock key) — the token is
 *   the txn's revision; release = LeaseRevoke (deletes the key with the lease). 3 round trips,
 *   3 raft writes.
 * - `raw-etcd-textbook`: the usual recipe: LeaseGrant ; Txn(put-if-absent of the lock key on
 *   the lease) ; release = DeleteRange(lock key) ; LeaseRevoke. 4 round trips, 4 raft writes.
 */
import { createRequire } from 'node:module';
import { Etcd3 } from 'etcd3';
import type { LockSystem, Release, SystemId } from './systems.js';

/** The etcd backend's lease TTL for a lease of `ttlMs` (whole seconds, at least 2). */
export function etcdTtlSeconds(ttlMs: number): number {
  return Math.max(Math.ceil(ttlMs / 1000), 2);
}

/** Same length as the etcd backend's owner of an unauthenticated lock connection (`locks-1`). */
const OWNER = Buffer.from('bench-1');

export class RawEtcdLocks implements LockSystem {
  private readonly ttlS: number;
  private readonly prefix: string;

  constructor(
    readonly id: Extract<SystemId, 'raw-etcd' | 'raw-etcd-textbook'>,
    private readonly client: Etcd3,
    ttlMs: number,
  ) {
    this.ttlS = etcdTtlSeconds(ttlMs);
    // Keys of their own: never the relay's (capsync/locks/), nor each other's.
    this.prefix = `capsync-bench/${id}/`;
  }

  async acquire(key: string): Promise<Release> {
    const lockKey = Buffer.from(this.prefix + key);
    const { ID: lease } = await this.client.leaseClient.leaseGrant({ TTL: this.ttlS });
    if (this.id === 'raw-etcd') {
      const res = await this.client.kv.txn({
        compare: [{ key: lockKey, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [
          { request_put: { key: lockKey, value: OWNER, lease } },
          { request_put: { key: Buffer.from(`${this.prefix}\u0000last/${key}`), value: OWNER } },
        ],
        failure: [{ request_range: { key: lockKey } }],
      });
      if (!res.succeeded) throw new Error(`raw etcd3: "${key}" was taken (the workloads never contend)`);
      return async () => {
        await this.client.leaseClient.leaseRevoke({ ID: lease });
      };
    }
    const res = await this.client.kv.txn({
      compare: [{ key: lockKey, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: lockKey, value: OWNER, lease } }],
    });
    if (!res.succeeded) throw new Error(`raw etcd3: "${key}" was taken (the workloads never contend)`);
    return async () => {
      await this.client.kv.deleteRange({ key: lockKey });
      await this.client.leaseClient.leaseRevoke({ ID: lease });
    };
  }

  relayCpuMicros(): number {
    return Number.NaN;
  }

  async close(): Promise<void> {
    // The etcd3 client is shared; its owner closes it.
  }
}

/** One etcd3 client for the raw systems, on every member (it picks one per call, as the backend's does). */
export function rawEtcdClient(endpoints: string[]): Etcd3 {
  return new Etcd3({ hosts: endpoints });
}

/** The installed etcd3 client's version. */
export function etcd3Version(): string {
  try {
    return (createRequire(import.meta.url)('etcd3/package.json') as { version: string }).version;
  } catch {
    return '?';
  }
}
