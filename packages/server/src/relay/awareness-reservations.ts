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
 * Bounded, so that nobody can push everyone else's reservations out:
 * - at most `perIdentity` per identity: its own oldest is dropped first (one user's churn
 *   replaces her own reservations);
 * - at most `perAddress` per client address for identities other than a token's `sub`:
 *   owner keys cost nothing to make up, so one client could otherwise reserve under a
 *   thousand fresh keys. Past it the NEW reservation is not made (`onRefused`), never an older
 *   one dropped, so alice's reservation survives a neighbour's churn from her own address
 *   (loopback, an office NAT). Token subjects are not counted per address (many users of an
 *   office share one);
 * - at most `perDoc` per document: the oldest is dropped first (only reachable from many
 *   addresses or subjects).
 * Expired ones are dropped when looked up or when room is needed. No timers.
 */
export const RESERVATION_MS = outdatedTimeout;

/** Who a freed id is reserved for. */
export interface ReservationHolder {
  /** Lasting identity: `sub:<subject>` or `key:<owner key hash>` (see ConnectionIdentity). */
  identity: string;
  /** The client's address, if known; counted only for identities that are not a `sub:`. */
  address?: string | undefined;
}

export interface ReservationLimits {
  perDoc: number;
  perIdentity: number;
  perAddress: number;
}

interface Reservation {
  identity: string;
  /** The address it counts against (undefined: not counted per address). */
  address: string | undefined;
  until: number;
}

export class AwarenessReservations {
  /** Insertion order is expiry order (every reservation lasts the same time). */
  private readonly held = new Map<number, Reservation>();

  constructor(
    private readonly limits: ReservationLimits,
    private readonly onRefused: () => void = () => {},
  ) {}

  /** Holds `id` for `holder.identity` (renewing an existing reservation), within the bounds. */
  reserve(id: number, holder: ReservationHolder): void {
    const { identity } = holder;
    const address = identity.startsWith('sub:') ? undefined : holder.address;
    this.held.delete(id);
    const now = performance.now();
    let ofIdentity = 0;
    let ofAddress = 0;
    for (const r of this.held.values()) {
      if (r.until <= now) continue;
      if (r.identity === identity) ofIdentity++;
      else if (address !== undefined && r.address === address) ofAddress++;
    }
    // The identity's own reservations make room for it first, so they never count as the
    // address's others: only other identities of that address can fill its share.
    if (address !== undefined && ofAddress + Math.min(ofIdentity, this.limits.perIdentity - 1) >= this.limits.perAddress) {
      this.onRefused();
      return;
    }
    if (ofIdentity >= this.limits.perIdentity) {
      for (const [oldest, r] of this.held) {
        if (r.identity !== identity) continue;
        this.held.delete(oldest);
        if (--ofIdentity < this.limits.perIdentity) break;
      }
    }
    for (const [oldest, r] of this.held) {
      if (this.held.size < this.limits.perDoc && r.until > now) break;
      this.held.delete(oldest);
    }
    this.held.set(id, { identity, address, until: now + RESERVATION_MS });
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
