import { AuthError, ProtocolError, type CapsyncError, type SessionOpenMessage } from '@capsync/core';
import type { AccessControl, AccessGrant, Principal } from '../auth/access.js';
import { LOCKS_PATH, type LockConnection } from '../locks/lock-connection.js';
import type { MuxServedDoc } from './mux-session-channel.js';

/**
 * The lock session of a multiplexed socket (`session-open` kind 'locks', name ''): the lock
 * protocol served by the same LockConnection as the lock endpoint (`/.capsync/locks`), over the
 * session's channel, for the socket's principal. What MuxConnection needs to decide and serve it.
 *
 * Why at most one per socket: every bound of the lock endpoint is per connection or per
 * identity (lease quotas per identity and per address, the socket's send buffer, the
 * connection caps counting the socket once), and a lock session costs the relay a
 * LockConnection. One socket opening many lock sessions would gain nothing but that cost, so a
 * second open is refused (4400) like a second session of one document.
 */

/**
 * The key a lock session takes among the socket's open sessions (MuxConnection's one-per-name
 * set): the lock endpoint's path, which no document may be named (validateDocName refuses
 * `.capsync/` names), so it can never collide with a document's session.
 */
export const LOCK_SESSION_KEY = LOCKS_PATH;

/**
 * The grant of a lock session, or throws the error its refusal names: a name or subdocument
 * given (4400), a lock session already open on the socket (4400), the principal without write
 * access to `.capsync/locks` (4403, as the lock endpoint refuses it), an expired token (4401).
 */
export function authorizeLockSession(access: AccessControl, principal: Principal, msg: SessionOpenMessage, alreadyOpen: boolean): AccessGrant | Promise<AccessGrant> {
  if (msg.name !== '' || msg.subdoc !== '') throw new ProtocolError('bad-message', 'a lock session names no document (name and subdoc must be empty)');
  if (alreadyOpen) throw new ProtocolError('bad-message', 'a lock session is already open on this socket (one per socket)');
  const grant = access.authorizeDoc(principal, LOCKS_PATH);
  return grant instanceof Promise ? grant.then(mayLock) : mayLock(grant);
}

function mayLock(grant: AccessGrant): AccessGrant {
  if (grant.permission !== 'write') throw new AuthError('forbidden', 'taking locks needs write access to ' + LOCKS_PATH);
  return grant;
}

/**
 * What the session's channel needs of its lock connection (MuxServedDoc). A lock connection
 * handles every frame as it arrives (it has no document to load), so it never queues input:
 * nothing of it counts against the socket's input bound.
 */
export function servedLocks(conn: LockConnection): MuxServedDoc {
  return {
    document: NEVER_QUEUES,
    fail: (err: CapsyncError) => conn.fail(err),
  };
}

const NEVER_QUEUES = { paused: false } as const;
