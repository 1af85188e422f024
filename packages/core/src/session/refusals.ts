import { AuthError, CapsyncError, DocumentDeletedError, NotOwnerError, ProtocolVersionError } from '../errors.js';
import { CloseCode, errorCodeFromReason } from '../protocol/close-codes.js';

/**
 * What a close code and reason (made by the other side's `closeReasonFor`: "<error code>:
 * <message>") mean to the side that dialled: the typed error of a refusal, and whether
 * dialling again can help. Used by the Dialer for every outbound link.
 */

/**
 * Close codes after which dialling again cannot help until something changes. Not FencedArea:
 * with several relays, a client may hold a fenced value (written through another relay) that
 * this relay has not received from its peers yet; its sync step 2 then carries that value and
 * is refused. Once the relay caught up, or on another relay, the same step 2 is accepted; so
 * it is a refusal retried with backoff, never a reason to stop syncing the user's edits.
 */
export const FATAL_CLOSE_CODES = new Set<number>([
  CloseCode.Forbidden,
  CloseCode.PermissionRevoked,
  CloseCode.InvalidDocName,
  CloseCode.ProtocolVersion,
  CloseCode.DocumentDeleted,
]);

/** The typed error a close code stands for, when it is a refusal the link's owner must see; null for a plain close. */
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
    case CloseCode.PermissionRevoked:
      return new AuthError('permission-revoked', detail);
    case CloseCode.InvalidDocName:
      return new CapsyncError('invalid-doc-name', detail);
    case CloseCode.ProtocolVersion:
      return new ProtocolVersionError(detail);
    // The replica is of a deleted incarnation: dialling again with it is refused the same way.
    case CloseCode.DocumentDeleted:
      return new DocumentDeletedError(detail);
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
 * What a Dialer does after a refusal:
 * - 'stop': report it and stay offline until `start()` (it would be refused everywhere);
 * - 'retry': report it and dial the next URL after the backoff;
 * - 'retry-slowly': the same, with the backoff at its cap from now on (one side must change
 *   first, as with a peer relay of another protocol version);
 * - 'handled': the link's owner deals with it (not reported); dial again after the backoff.
 */
export type RefusalAction = 'stop' | 'retry' | 'retry-slowly' | 'handled';

/**
 * The default: a fatal close code stops the link, except not-owner, which shares 4403 with
 * forbidden but can heal (in a mesh, a relay that has not yet received another user's content
 * this side carries refuses it until its peers deliver it); `unauthorized` stops unless a new
 * attempt presents a fresh credential (`retryUnauthorized`); everything else is retried.
 */
export function defaultRefusalAction(code: number, refusal: CapsyncError, retryUnauthorized: boolean): RefusalAction {
  if (refusal.code === 'unauthorized') return retryUnauthorized ? 'retry' : 'stop';
  if (FATAL_CLOSE_CODES.has(code) && refusal.code !== 'not-owner') return 'stop';
  return 'retry';
}
