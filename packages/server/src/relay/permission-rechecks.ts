import type { LiveCredential } from '../auth/live-credential.js';

/**
 * Sockets re-checked at once, at most, relay-wide: with RECHECKS_PER_SOCKET sessions each, at
 * most 128 authorization callback calls of the re-checks are in flight, well under the
 * callback's relay-wide bound (MAX_AUTHORIZATIONS_IN_FLIGHT), so the re-checks never crowd out
 * the opens of new documents.
 */
export const RECHECK_SOCKETS_AT_ONCE = 16;

/**
 * `--auth-recheck-interval-ms`: every interval, each client socket's open sessions have their
 * permission decided again with its current credential (LiveCredential.recheck): a JWT's claims
 * and expiry read again, an authorization callback (`--auth-webhook`) asked again (through its
 * answer cache: a revocation is seen within the interval plus `--auth-webhook-cache-ms`).
 * Bounded cost: one round at a time (a round that outlasts the interval skips the next tick),
 * its sockets taken in turn, RECHECK_SOCKETS_AT_ONCE at once. 0 turns it off. A socket leaves
 * it when it closes (`remove`, from LiveCredential.ended).
 */
export class PermissionRechecks {
  private readonly sockets = new Set<LiveCredential>();
  private readonly timer: NodeJS.Timeout | null;
  private running = false;

  constructor(intervalMs: number) {
    this.timer = intervalMs > 0 ? setInterval(() => void this.round(), intervalMs) : null;
    this.timer?.unref();
  }

  /** Re-checks `live` every interval until its socket closes. */
  add(live: LiveCredential): void {
    if (this.timer) this.sockets.add(live);
  }

  /** Its socket closed: not re-checked, nor held, any more. */
  remove(live: LiveCredential): void {
    this.sockets.delete(live);
  }

  /** The sockets it re-checks. */
  get size(): number {
    return this.sockets.size;
  }

  /** One round over every socket (also what the timer runs). */
  async round(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (const live of this.sockets) if (live.closed) this.sockets.delete(live);
      const all = [...this.sockets];
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < all.length) {
          const live = all[next++]!;
          if (!live.closed) await live.recheck().catch(() => {});
        }
      };
      await Promise.all(Array.from({ length: Math.min(RECHECK_SOCKETS_AT_ONCE, all.length) }, worker));
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.sockets.clear();
  }
}
