import { LimitExceededError } from '@capsync/core';

/**
 * The sessions the multiplexed sockets of each client address have open, capped together
 * (`--max-sessions-per-address`; 0 = no cap). Why: a plain connection is one document and the
 * connections of an address are capped (`--max-connections-per-address`), but each multiplexed
 * socket holds up to `--max-sessions-per-socket` documents, so without this one address could
 * hold that many times more documents (and their memory) than it may hold plain connections.
 * Peer relays are not counted (no address), as for the connection caps.
 */
export class AddressSessions {
  private readonly open = new Map<string, number>();

  constructor(private readonly maxPerAddress: number) {}

  /**
   * Counts one more session of `address`, or returns the refusal (nothing counted) when the
   * address has its cap open. Give it back with `release` once the session ends.
   */
  take(address: string | undefined): LimitExceededError | null {
    if (address === undefined) return null;
    const now = this.open.get(address) ?? 0;
    if (this.maxPerAddress > 0 && now >= this.maxPerAddress) {
      return new LimitExceededError(
        'max-sessions-per-address',
        `max-sessions-per-address: the multiplexed sockets of this address have ${this.maxPerAddress} sessions open; close one first`,
      );
    }
    this.open.set(address, now + 1);
    return null;
  }

  /** One session of `address` ended (taken with `take`). */
  release(address: string | undefined): void {
    if (address === undefined) return;
    const now = (this.open.get(address) ?? 0) - 1;
    if (now > 0) this.open.set(address, now);
    else this.open.delete(address);
  }
}
