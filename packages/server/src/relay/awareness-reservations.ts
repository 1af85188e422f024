import { outdatedTimeout } from 'y-protocols/awareness';

/**
 * Awareness client ids that were freed, held for the identity that owned them.
 *
 * An awareness id is owned by the connection that set it (DocAwareness); when that connection
 * goes away (a network blip) or its state is removed, the id would be free for anyone at once:
 * another client could take a user's presence id the moment her socket drops, and her presence
 * would be ignored after she reconnects. So a freed id is reserved for the owner's identity
 * (`sub:` of a token, or `key:` of a capsync client's owner key; see ConnectionIdentity) for
 * `RESERVATION_MS` (y-protocols' awareness timeout: a client not back by then would have timed
 * out anyway): the same identity may set it again, everyone else's states and removals for it
 * are ignored meanwhile.
 *
 * Connections without a lasting identity (a stock y-websocket client on an open relay, a token
 * without `sub` and no owner key) reserve nothing: there is nobody to give the id back to, and
 * reserving it for nobody would hide that client's own presence for 30 s after every blip. On an
 * open relay anyone may edit the document itself, so presence spoofing adds little there.
 *
 * Bounded: at most `max` reservations per document (the oldest is dropped first) and at most
 * `maxPerIdentity` per identity (its own oldest is dropped first), so that one identity cannot
 * push everyone else's reservations out; expired ones are dropped when looked up or when room
 * is needed. No timers.
 */
export const RESERVATION_MS = outdatedTimeout;

export class AwarenessReservations {
  /** Insertion order is expiry order (every reservation lasts the same time). */
  private readonly held = new Map<number, { identity: string; until: number }>();

  constructor(
    private readonly max: number,
    private readonly maxPerIdentity: number,
  ) {}

  /** Holds `id` for `identity` (renewing an existing reservation). */
  reserve(id: number, identity: string): void {
    this.held.delete(id);
    const now = performance.now();
    let ofIdentity = 0;
    for (const r of this.held.values()) if (r.identity === identity && r.until > now) ofIdentity++;
    if (ofIdentity >= this.maxPerIdentity) {
      for (const [oldest, r] of this.held) {
        if (r.identity !== identity) continue;
        this.held.delete(oldest);
        if (--ofIdentity < this.maxPerIdentity) break;
      }
    }
    for (const [oldest, r] of this.held) {
      if (this.held.size < this.max && r.until > now) break;
      this.held.delete(oldest);
    }
    this.held.set(id, { identity, until: now + RESERVATION_MS });
  }

  /** The identity `id` is reserved for, or undefined (never reserved, or expired). */
  holder(id: number): string | undefined {
    const r = this.held.get(id);
    if (r === undefined) return undefined;
    if (r.until <= performance.now()) {
      this.held.delete(id);
      return undefined;
    }
    return r.identity;
  }

  /** The reservation is taken up (its identity set the id again). */
  release(id: number): void {
    this.held.delete(id);
  }

  get size(): number {
    return this.held.size;
  }
}
