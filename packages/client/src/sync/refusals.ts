import { CloseCode, errorCodeFromReason } from '@capsync/core';

/**
 * The refusals a document handle deals with itself. What every other close code means (the
 * typed error, whether retrying helps) is core's refusal table (core/session/refusals.ts),
 * applied by the Dialer under the RelayLink.
 */

/**
 * The awareness limit a 4413 `limit-exceeded` close names (`max-awareness-state-bytes`,
 * `max-awareness-states-per-connection`: the relay's messages start with the flag), or
 * undefined when the close is about something else (an update's client ids, pending content).
 */
export function awarenessLimitOf(code: number, reason: string): string | undefined {
  if (code !== CloseCode.LimitExceeded || errorCodeFromReason(reason) !== 'limit-exceeded') return undefined;
  return /--(max-awareness-[a-z-]+)/.exec(reason)?.[1];
}
