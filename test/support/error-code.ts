import { isCapsyncError } from '@capsync/core';

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
