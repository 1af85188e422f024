import { CloseCode, closeCodeFor, errorCodeFromReason, isCapsyncError } from '@capsync/core';

/**
 * How a promise settled, as one comparable string: 'ok', or the capsync error code it
 * rejected with (`'lock-timeout'`, `'unavailable'`, ...). Anything that is not a capsync
 * error is rethrown: a test should never mistake a crash for a refusal.
 */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (isCapsyncError(err)) return err.code;
    throw err;
  }
}

/** Close codes that mean the relay failed, not that the input was bad. */
const RELAY_FAILURE_CODES = new Set<number>([CloseCode.InternalError, CloseCode.StorageUnavailable, CloseCode.GoingAway]);
const NAMED_CLOSE_CODES = new Set<number>(Object.values(CloseCode));

/**
 * Whether a close the relay made for bad input is classified: a named code that is not a relay
 * failure, with a reason naming the error it is for. 1009 comes from ws without a reason (that
 * gap is pinned by the bad-input test).
 */
export function isClassifiedRefusal(code: number, reason: string): boolean {
  const error = errorCodeFromReason(reason);
  const reasonMatches = code === CloseCode.MessageTooBig || (error !== undefined && closeCodeFor(error) === code);
  return NAMED_CLOSE_CODES.has(code) && !RELAY_FAILURE_CODES.has(code) && reasonMatches;
}
