/**
 * What to tell a shopper or an admin when a purchase or a restock does not happen. Each
 * message says what happened to their stock change (not made, or not known) and what still
 * works: the catalog is an AP document, so editing it never needs the relay.
 */
import { isCapsyncError } from '@capsync/client';
import { OutcomeUnknownError, type PurchaseResult } from './stock.js';

export type StockAction = 'purchase' | 'restock';

/** The message for an unreachable relay or lock service (UnavailableError). */
export function unreachableMessage(action: StockAction = 'purchase'): string {
  return `The store is unreachable: ${action}s need a connection to the stock service. Your catalog edits are saved and will sync.`;
}

/** A user-facing sentence for an error thrown by `purchase` or `restock`. */
export function describeError(err: unknown, action: StockAction = 'purchase'): string {
  if (err instanceof OutcomeUnknownError) {
    return `The connection dropped while your ${action} was being confirmed: it may or may not have gone through. Check the stock once you are back online before trying again.`;
  }
  if (isCapsyncError(err)) {
    switch (err.code) {
      case 'unavailable':
        return unreachableMessage(action);
      case 'lock-timeout':
        return `Another purchase or restock of this product is in progress. Your ${action} was not made; try again in a moment.`;
      case 'lease-lost':
      case 'stale-token':
        return `Your hold on this product's stock ran out before the ${action} was confirmed, so it was cancelled and nothing changed. Try again.`;
      case 'unauthorized':
      case 'forbidden':
      case 'read-only':
        return `You are not allowed to change stock in this store, so your ${action} was not made.`;
      default:
        break;
    }
  }
  if (err instanceof RangeError) return err.message.charAt(0).toUpperCase() + err.message.slice(1) + '.';
  return `Your ${action} did not go through: ${err instanceof Error ? err.message : String(err)}`;
}

/** A user-facing sentence for a purchase result; `name` is the product's display name. */
export function describePurchase(result: PurchaseResult, name: string = result.productId): string {
  if (result.ok) return `Bought ${result.quantity} × ${name}. ${result.remaining} left.`;
  if (result.available === 0) return `${name} is out of stock: nothing was bought.`;
  return `Out of stock: only ${result.available} ${name} left, so ${result.quantity} could not be bought. Nothing was bought.`;
}
