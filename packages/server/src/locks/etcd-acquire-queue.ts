/**
 * The etcd lock backend's waiters: this relay serves its own acquires of a key first come,
 * first served. Only the head of a key's queue tries to take the key (one transaction at a
 * time); when the key is held elsewhere it watches the key for its deletion and tries again
 * then. Between relays there is no queue: whichever relay's transaction lands first wins.
 */
import type { Watcher } from 'etcd3';
import type { Logger } from '../logger.js';
import { lockBusy, shuttingDown, withdrawn, type AcquireRequest, type LockGrant } from './lock-backend.js';
import type { EtcdLockKeys } from './etcd-lock-keys.js';
import type { HolderSlot, LeaseKeeper } from './etcd-lease-keeper.js';

export interface Waiter {
  request: AcquireRequest;
  resolve(grant: LockGrant): void;
  reject(err: unknown): void;
  timer: NodeJS.Timeout | undefined;
  /** `waitMs` has passed: one more attempt decides between a grant and LockTimeoutError. */
  timedOut: boolean;
  onAbort: () => void;
}

/** What this relay knows of one key. */
export interface KeyState extends HolderSlot {
  /** This relay's requests for the key, first come first served. */
  waiters: Waiter[];
  /** A grant attempt for the head waiter is in flight. */
  attempting: boolean;
  /** The key was deleted while an attempt was in flight: try again when it returns. */
  kicked: boolean;
  /**
   * Highest token this relay granted for the key. One that is not its live holder's has
   * ended here (released or expired), and this relay no longer keeps it alive: no need to
   * ask etcd that it is not current.
   */
  lastLocal: number;
  /** Watches the key for deletion while waiters wait. */
  watcher: { watcher: Watcher; onDelete: () => void; onError: (err: Error) => void } | null;
}

export interface AcquireQueuesOptions {
  keys: EtcdLockKeys;
  keeper: LeaseKeeper<KeyState>;
  logger: Logger | undefined;
}

export class AcquireQueues {
  private readonly states = new Map<string, KeyState>();
  private closed = false;

  constructor(private readonly o: AcquireQueuesOptions) {}

  /** The key's state, if this relay holds, waits for, or granted it. */
  get(key: string): KeyState | undefined {
    return this.states.get(key);
  }

  /** Queues an acquire (the backend checked it is not closed nor withdrawn already). */
  acquire(request: AcquireRequest): Promise<LockGrant> {
    const st = this.state(request.key);
    if (request.waitMs <= 0 && (st.holder || st.waiters.length > 0)) {
      return Promise.reject(lockBusy(request.key, 0));
    }
    return new Promise<LockGrant>((resolve, reject) => {
      const waiter: Waiter = {
        request,
        resolve,
        reject,
        timer: undefined,
        timedOut: false,
        onAbort: () => {
          this.dropWaiter(st, waiter);
          reject(withdrawn());
          this.pump(request.key, st);
        },
      };
      if (request.waitMs > 0) waiter.timer = setTimeout(() => this.waitOver(request.key, st, waiter), request.waitMs);
      else waiter.timedOut = true;
      request.signal?.addEventListener('abort', waiter.onAbort, { once: true });
      st.waiters.push(waiter);
      this.pump(request.key, st);
    });
  }

  /**
   * Moves the queue of `key` along: the head waiter tries to take the key unless this relay
   * holds it (its release or expiry calls this again) or an attempt is in flight.
   */
  pump(key: string, st: KeyState): void {
    if (this.closed || st.attempting) return;
    const head = st.waiters[0];
    if (!head) {
      this.unwatch(st);
      this.gc(key, st);
      return;
    }
    if (st.holder) {
      if (head.timedOut) {
        this.dropWaiter(st, head);
        head.reject(lockBusy(key, head.request.waitMs));
        this.pump(key, st);
      }
      return;
    }
    st.attempting = true;
    st.kicked = false;
    this.o.keys.tryCreate(head.request, () => head.request.signal?.aborted === true || this.closed).then(
      (outcome) => {
        st.attempting = false;
        const waiting = st.waiters[0] === head;
        if (outcome.granted) {
          if (!waiting || this.closed) {
            // Nobody will learn of this grant (withdrawn, or shutting down): end it now.
            this.o.keys.dropLease(outcome.leaseId, `ending an unclaimed grant of "${key}"`);
            if (!this.closed) this.pump(key, st);
            return;
          }
          this.dropWaiter(st, head);
          const { token, leaseId, leaseTtlS, started } = outcome;
          st.lastLocal = Math.max(st.lastLocal, token);
          this.o.keeper.hold(key, st, { token, owner: head.request.owner, leaseId, leaseTtlS, expiresAt: started + head.request.ttlMs, expiryTimer: undefined, keepAliveTimer: undefined });
          // Counted from receipt (the LockGrant contract): a waited grant runs from `started`.
          const from = head.request.receivedAt ?? started;
          head.resolve({ key, token, ttlMs: head.request.ttlMs + Math.max(0, Math.floor(started - from)) });
          this.pump(key, st);
          return;
        }
        if (waiting && head.timedOut) {
          this.dropWaiter(st, head);
          head.reject(lockBusy(key, head.request.waitMs));
          this.pump(key, st);
          return;
        }
        if (!waiting || st.kicked) {
          this.pump(key, st);
          return;
        }
        // Wait for the holder's key to go: any deletion after the revision we saw it at.
        this.watch(key, st, outcome.revision + 1);
      },
      (err: unknown) => {
        st.attempting = false;
        if (st.waiters[0] === head) {
          this.dropWaiter(st, head);
          head.reject(err);
        }
        this.pump(key, st);
      },
    );
  }

  /** Rejects every waiter, stops every holder's timers and watch, and forgets every key. */
  close(): void {
    this.closed = true;
    for (const st of this.states.values()) {
      if (st.holder) this.o.keeper.stopTimers(st.holder);
      for (const w of st.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.request.signal?.removeEventListener('abort', w.onAbort);
        w.reject(shuttingDown());
      }
      this.unwatch(st);
    }
    this.states.clear();
  }

  private state(key: string): KeyState {
    let st = this.states.get(key);
    if (!st) this.states.set(key, (st = { holder: null, waiters: [], attempting: false, kicked: false, lastLocal: 0, watcher: null }));
    return st;
  }

  /** Forgets a key nothing refers to any more (keys this relay granted are remembered, like the embedded backend's). */
  private gc(key: string, st: KeyState): void {
    if (st.lastLocal > 0 || st.holder || st.waiters.length > 0 || st.attempting || st.watcher) return;
    if (this.states.get(key) === st) this.states.delete(key);
  }

  /** `waitMs` passed: the head waiter gets one last attempt (it may be in flight), others give up. */
  private waitOver(key: string, st: KeyState, waiter: Waiter): void {
    waiter.timedOut = true;
    if (st.waiters[0] === waiter) {
      this.pump(key, st);
      return;
    }
    this.dropWaiter(st, waiter);
    waiter.reject(lockBusy(key, waiter.request.waitMs));
  }

  private kick(key: string, st: KeyState): void {
    if (st.attempting) st.kicked = true;
    else this.pump(key, st);
  }

  private watch(key: string, st: KeyState, fromRevision: number): void {
    if (st.watcher || this.closed) return;
    const watcher = this.o.keys.watchDeletion(key, fromRevision);
    const onDelete = () => this.kick(key, st);
    const onError = (err: Error) => {
      // E.g. the revision was compacted: a fresh attempt sees the key anew and watches again.
      this.o.logger?.warn({ err, key }, 'etcd watch on a lock failed');
      this.unwatch(st);
      this.kick(key, st);
    };
    watcher.on('delete', onDelete);
    watcher.on('error', onError);
    st.watcher = { watcher, onDelete, onError };
  }

  private unwatch(st: KeyState): void {
    const w = st.watcher;
    if (!w) return;
    st.watcher = null;
    w.watcher.off('delete', w.onDelete);
    w.watcher.off('error', w.onError);
    // An 'error' nobody listens to would be thrown; the cancellation itself may never be
    // answered while etcd is unreachable, and nobody waits for it.
    w.watcher.on('error', () => {});
    void w.watcher.cancel().catch(() => {});
  }

  private dropWaiter(st: KeyState, waiter: Waiter): void {
    const i = st.waiters.indexOf(waiter);
    if (i >= 0) st.waiters.splice(i, 1);
    clearTimeout(waiter.timer);
    waiter.request.signal?.removeEventListener('abort', waiter.onAbort);
  }
}
