import { CloseCode, errorCodeFromReason } from '@capsync/core';

/**
 * Relay refusals a document handle recovers from itself, read from a close code and reason
 * (made by the relay's `closeReasonFor`: "<error code>: <message>").
 */

/** A 4403 `not-owner`: content under a client id another identity owns (see ClientRekey). */
export function isNotOwnerClose(code: number, reason: string): boolean {
  return code === CloseCode.Forbidden && errorCodeFromReason(reason) === 'not-owner';
}

/**
 * The awareness limit a 4413 `limit-exceeded` close names (`max-awareness-state-bytes`,
 * `max-awareness-states-per-connection`: the relay's messages start with the flag), or
 * undefined when the close is about something else (an update's client ids, pending content).
 */
export function awarenessLimitOf(code: number, reason: string): string | undefined {
  if (code !== CloseCode.LimitExceeded || errorCodeFromReason(reason) !== 'limit-exceeded') return undefined;
  return /--(max-awareness-[a-z-]+)/.exec(reason)?.[1];
}
