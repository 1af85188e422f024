import { StorageError } from '@capsync/core';

/** Errors of the PostgreSQL store: every failure is a `StorageError`, retryable when the database could not be reached. */

export function closedError(): StorageError {
  return new StorageError('PostgreSQL store is closed');
}

export function storageError(what: string, err: unknown): StorageError {
  return new StorageError(`PostgreSQL ${what} failed: ${(err as Error).message || String(err)}`, { cause: err, retryable: unreachable(err) });
}

/** Network errors of a connection to the database (Node's codes). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/**
 * SQLSTATEs of a database that cannot serve now but may soon: class 08 (connection exception),
 * admin/crash shutdown, starting up, too many connections. Not a cancelled statement (57014,
 * our statement_timeout, for example behind a row lock held by a commit that waits for a gone
 * synchronous standby): retried, a statement that always times out would be retried forever,
 * silently, with the relay reporting storage unreachable while other documents commit. It
 * fails the append instead: the document reloads from storage and its sender resends.
 */
const UNAVAILABLE_STATES = new Set(['57P01', '57P02', '57P03', '53300']);

/**
 * Whether `err` says the database could not be reached (down, restarting, partitioned away,
 * frozen past the query timeout) rather than refused the statement: the relay then tries the
 * write again (StorageError.retryable) instead of reloading the document. A statement that timed
 * out may have committed after all; writing it again is harmless (a Yjs update applies once, a
 * client id's first claim wins).
 */
function unreachable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (NETWORK_CODES.has(code) || UNAVAILABLE_STATES.has(code) || code.startsWith('08')) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  // node-postgres's own errors for a lost, timed-out or refused connection carry no code.
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error/i.test(message);
}
