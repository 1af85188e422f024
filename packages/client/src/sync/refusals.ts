import { AuthError, CapsyncError, CloseCode, NotOwnerError, ProtocolVersionError, errorCodeFromReason } from '@capsync/core';

/**
 * What a relay's close code and reason (made by its `closeReasonFor`: "<error code>: <message>")
 * mean to a client: the typed error of a refusal, whether retrying can help, and the refusals a
 * document handle deals with itself (presence over an awareness limit).
 */

/**
 * Close codes after which retrying cannot help until something changes. Not FencedArea: with
 * several relays, this client may hold a fenced value (written through another relay) that
 * this relay has not received from its peers yet; its sync step 2 then carries that value and
 * is refused. Once the relay caught up, or on another relay, the same step 2 is accepted; so
 * it is a refusal retried with backoff, never a reason to stop syncing the user's edits.
 */
export const FATAL_CLOSE_CODES = new Set<number>([CloseCode.Forbidden, CloseCode.InvalidDocName, CloseCode.ProtocolVersion]);

/** The typed error a relay's close code stands for, when it is a refusal the app must see. */
export function refusalFor(code: number, reason: string): CapsyncError | null {
  const errorCode = errorCodeFromReason(reason);
  const detail = reason || `closed with code ${code}`;
  switch (code) {
    case CloseCode.Unauthorized:
      return new AuthError('unauthorized', detail);
    case CloseCode.Forbidden:
      // Content under a client id another identity owns on the relay (see the README).
      if (errorCode === 'not-owner') return new NotOwnerError(detail);
      return new AuthError('forbidden', detail);
    case CloseCode.InvalidDocName:
      return new CapsyncError('invalid-doc-name', detail);
    case CloseCode.ProtocolVersion:
      return new ProtocolVersionError(detail);
    // Without this case the code never reached FATAL_CLOSE_CODES: the link retried forever.
    case CloseCode.FencedArea:
      return new CapsyncError('fenced-area', detail);
    case CloseCode.BadMessage:
    case CloseCode.InvalidUpdate:
    case CloseCode.MessageTooBig:
    case CloseCode.UnsupportedData:
    case CloseCode.SlowConsumer:
    case CloseCode.LimitExceeded:
    case CloseCode.StorageUnavailable:
    case CloseCode.InternalError:
      return new CapsyncError(errorCode ?? 'internal', detail);
    default:
      return null;
  }
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
