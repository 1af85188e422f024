/**
 * The etcd lock backend's keys and the transactions on them: where a lock lives in etcd, how
 * it is created (acquire), moved to a longer etcd lease (renew), deleted by its owner through
 * another relay (release), and read (check). Each call is bounded by a deadline through
 * EtcdCalls (etcd-fault-handling.ts). When to make which call is the backend's
 * (etcd-backend.ts, etcd-acquire-queue.ts, etcd-lease-keeper.ts).
 *
 * Layout, under `prefix`:
 * - `prefix + key`: the lock, present while a lease holds it, attached to an etcd lease of its
 *   own. Its create revision is the fencing token (etcd revisions only grow, so tokens
 *   strictly increase per key, across relays and restarts); its value is the identity that
 *   acquired it (`AcquireRequest.owner`).
 * - `prefix + "\0last/" + key`: written with every grant, without a lease (it outlives the
 *   lock), so its mod revision is the highest token ever granted for the key: `check` tells a
 *   stale token from a lost one after the lock is gone. Lock keys cannot collide with it: lock
 *   service keys contain no control characters.
 */
import type { IKeyValue, ITxnResponse, Watcher } from 'etcd3';
import { leaseLost, notOwner, withdrawn, type AcquireRequest } from './lock-backend.js';
import type { EtcdCalls } from './etcd-fault-handling.js';

/**
 * etcd leases are whole seconds. Two is the floor: etcd itself raises shorter TTLs to its
 * minimum (1.5 election timeouts, rounded up: 2 s with the default 1 s election timeout), and
 * a 1 s lease would leave keepalives (sent every third of the TTL) about 300 ms to get through
 * before etcd deleted the key under a live holder.
 */
export const MIN_ETCD_TTL_S = 2;

/** etcd lease TTL (seconds) for a lease of `ttlMs`: never shorter than the lease itself. */
export function etcdTtlSeconds(ttlMs: number): number {
  return Math.max(Math.ceil(ttlMs / 1000), MIN_ETCD_TTL_S);
}

/** No current lease under the token given (the wording every backend shares). */
export const lost = leaseLost;

/** One try at taking a key: granted (on `leaseId`), or held by someone else as of `revision`. */
export type Attempt =
  | { granted: true; token: number; leaseId: string; leaseTtlS: number; started: number }
  | { granted: false; revision: number };

/** What `read` found: the lock's token (0: none) and owner, and the highest token ever granted. */
export interface LockRead {
  current: number;
  owner: string | undefined;
  newest: number;
}

export class EtcdLockKeys {
  constructor(
    private readonly etcd: EtcdCalls,
    readonly prefix: string,
    private readonly opTimeoutMs: number,
  ) {}

  /**
   * Revokes an etcd lease (deleting the lock on it, if any) in the background, within an
   * operation's budget. Nobody waits for it: a lease that etcd does not hear of is no longer
   * kept alive, and runs out there by itself.
   */
  dropLease(leaseId: string, what: string): void {
    void this.revoke(leaseId, what).catch(() => {});
  }

  /** Revokes an etcd lease within an operation's budget (from now); false if etcd no longer had it. */
  revoke(leaseId: string, what: string): Promise<boolean> {
    return this.etcd.revoke(leaseId, performance.now() + this.opTimeoutMs, what);
  }

  /**
   * One try at taking the key: grant an etcd lease, then create the lock on it if the key does
   * not exist. `abandoned` is asked once the etcd lease is granted: true (the requester went
   * away, or the backend closed) drops it and rejects with the withdrawn refusal. Rejects with
   * UnavailableError when etcd does not answer within the operation's budget.
   */
  async tryCreate(request: AcquireRequest, abandoned: () => boolean): Promise<Attempt> {
    const { key, ttlMs, owner } = request;
    const started = performance.now();
    const deadline = started + this.opTimeoutMs;
    const leaseTtlS = etcdTtlSeconds(ttlMs);
    const leaseId = await this.grantLease(leaseTtlS, deadline, `acquiring "${key}"`);
    if (abandoned()) {
      // Withdrawn while the lease was being granted: do not take the key for nobody.
      this.dropLease(leaseId, `dropping an unused lease for "${key}"`);
      throw withdrawn();
    }
    let res: ITxnResponse;
    try {
      res = await this.etcd.call(`acquiring "${key}"`, deadline, (options) =>
        this.etcd.client.kv.txn(
          {
            compare: [{ key: this.lockKey(key), target: 'Create', result: 'Equal', create_revision: 0 }],
            success: [
              { request_put: { key: this.lockKey(key), value: Buffer.from(owner), lease: leaseId } },
              { request_put: { key: this.lastKey(key), value: Buffer.from(owner) } },
            ],
            failure: [{ request_range: { key: this.lockKey(key) } }],
          },
          options,
        ),
      );
    } catch (err) {
      // The put may have committed unseen: revoking the lease deletes the key with it.
      this.dropLease(leaseId, `withdrawing an attempt on "${key}"`);
      throw err;
    }
    if (res.succeeded) return { granted: true, token: Number(res.header.revision), leaseId, leaseTtlS, started };
    const holder: IKeyValue | undefined = res.responses[0]?.response_range.kvs[0];
    // A retry after an attempt whose answer was lost finds the key on our own lease: ours.
    if (holder && holder.lease === leaseId) return { granted: true, token: Number(holder.create_revision), leaseId, leaseTtlS, started };
    this.dropLease(leaseId, `dropping an unused lease for "${key}"`);
    return { granted: false, revision: Number(res.header.revision) };
  }

  /** A new etcd lease of `ttlS` seconds; resolves with its id. */
  async grantLease(ttlS: number, deadline: number, what: string): Promise<string> {
    const granted = await this.etcd.call(what, deadline, (options) => this.etcd.client.leaseClient.leaseGrant({ TTL: ttlS }, options));
    return granted.ID;
  }

  /**
   * Moves the lock of `token` (still `owner`'s) onto etcd lease `leaseId`; a put keeps the
   * create revision, so the token. False if the lock is no longer this token's.
   */
  async moveToLease(key: string, token: number, owner: string, leaseId: string, deadline: number): Promise<boolean> {
    const res = await this.etcd.call(`renewing "${key}"`, deadline, (options) =>
      this.etcd.client.kv.txn(
        {
          compare: [{ key: this.lockKey(key), target: 'Create', result: 'Equal', create_revision: token }],
          success: [{ request_put: { key: this.lockKey(key), value: Buffer.from(owner), lease: leaseId } }],
        },
        options,
      ),
    );
    return res.succeeded;
  }

  /** The lock of `key` as etcd has it now (a linearizable read), or undefined. */
  async readLock(key: string, deadline: number, what: string): Promise<IKeyValue | undefined> {
    const res = await this.etcd.call(what, deadline, (options) => this.etcd.client.kv.range({ key: this.lockKey(key) }, options));
    return res.kvs[0];
  }

  /**
   * Deletes the lock of `token` if it is current and `owner`'s, whichever relay granted it (one
   * compare-and-delete), and revokes its etcd lease. Rejects with NotOwnerError when it is
   * current and someone else's, LeaseLostError when it is not current.
   */
  async deleteOwned(key: string, token: number, owner: string, deadline: number): Promise<void> {
    const res = await this.etcd.call(`releasing "${key}"`, deadline, (options) =>
      this.etcd.client.kv.txn(
        {
          compare: [
            { key: this.lockKey(key), target: 'Create', result: 'Equal', create_revision: token },
            { key: this.lockKey(key), target: 'Value', result: 'Equal', value: Buffer.from(owner) },
          ],
          success: [{ request_delete_range: { key: this.lockKey(key), prev_kv: true } }],
          failure: [{ request_range: { key: this.lockKey(key) } }],
        },
        options,
      ),
    );
    if (!res.succeeded) {
      const kv = res.responses[0]?.response_range.kvs[0];
      if (kv && Number(kv.create_revision) === token) throw notOwner(key);
      throw lost(key);
    }
    const prevLease = res.responses[0]?.response_delete_range.prev_kvs[0]?.lease;
    if (prevLease && prevLease !== '0') this.dropLease(prevLease, 'revoking a released lease');
  }

  /** The lock and the highest token of `key`, both at one revision (one linearizable read-only transaction). */
  async read(key: string, deadline: number): Promise<LockRead> {
    const res = await this.etcd.call(`checking "${key}"`, deadline, (options) =>
      this.etcd.client.kv.txn(
        {
          success: [{ request_range: { key: this.lockKey(key) } }, { request_range: { key: this.lastKey(key) } }],
        },
        options,
      ),
    );
    const lock = res.responses[0]?.response_range.kvs[0];
    const last = res.responses[1]?.response_range.kvs[0];
    const current = lock ? Number(lock.create_revision) : 0;
    return { current, owner: lock?.value.toString(), newest: Math.max(current, last ? Number(last.mod_revision) : 0) };
  }

  /** Watches the lock of `key` for its deletion, from `fromRevision` on. */
  watchDeletion(key: string, fromRevision: number): Watcher {
    return this.etcd.client.watch().key(this.lockKey(key)).only('delete').startRevision(String(fromRevision)).watcher();
  }

  /** Resolves once etcd answers a quorum read under the prefix (startup diagnostics). */
  async probe(): Promise<void> {
    await this.etcd.call('probing etcd', performance.now() + this.opTimeoutMs, (options) =>
      this.etcd.client.kv.range({ key: Buffer.from(this.prefix), count_only: true }, options),
    );
  }

  private lockKey(key: string): Buffer {
    return Buffer.from(this.prefix + key);
  }

  private lastKey(key: string): Buffer {
    return Buffer.from(`${this.prefix}\u0000last/${key}`);
  }
}
