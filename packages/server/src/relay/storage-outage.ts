import type { RelayMetrics } from '../metrics.js';

/**
 * Whether the relay's storage can be reached, as its appends find it: the appends waiting to be
 * tried again after a retryable StorageError (a database down or partitioned away; see
 * DocAppends). The relay's CAP choice while any wait: it keeps serving the clients connected to
 * it (their changes still reach each other) and stops acknowledging; `/readyz` answers 503 so a
 * load balancer sends new clients to relays that can commit. The gauge
 * `capsync_storage_waiting_appends` shows how many wait.
 */
export class StorageOutage {
  private waiting = 0;

  constructor(private readonly metrics: Pick<RelayMetrics, 'storageWaitingAppends' | 'storageRetries' | 'storageReachable' | 'storageReachabilityChanges'>) {
    metrics.storageReachable.set(1);
  }

  /** True while an append waits for storage. */
  get unavailable(): boolean {
    return this.waiting > 0;
  }

  /** An append failed retryably and will be tried again. */
  waitBegan(): void {
    this.waiting++;
    this.metrics.storageWaitingAppends.set(this.waiting);
    if (this.waiting === 1) this.reachable(false);
  }

  /** That append is being tried again. */
  retrying(): void {
    this.metrics.storageRetries.inc();
  }

  /** That append committed, or was given up. */
  waitEnded(): void {
    this.waiting--;
    this.metrics.storageWaitingAppends.set(this.waiting);
    if (this.waiting === 0) this.reachable(true);
  }

  private reachable(up: boolean): void {
    this.metrics.storageReachable.set(up ? 1 : 0);
    this.metrics.storageReachabilityChanges.inc();
  }
}
