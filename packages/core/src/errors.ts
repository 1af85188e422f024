/**
 * Typed errors shared by every capsync package. Each error carries a stable string `code`
 * so callers can branch on it (`err.code === 'unavailable'`) without `instanceof` across
 * package copies, and an optional `cause` for the underlying failure.
 */

/** Every error code capsync produces. Stable: part of the public contract. */
export type ErrorCode =
  | 'bad-message'
  | 'unknown-message-type'
  | 'invalid-update'
  | 'invalid-awareness'
  | 'text-frame'
  | 'message-too-large'
  | 'invalid-doc-name'
  | 'unauthorized'
  | 'forbidden'
  | 'read-only'
  /** The permission on an open document was withdrawn (a token refresh or a periodic re-check): its session is closed. */
  | 'permission-revoked'
  | 'slow-consumer'
  | 'storage-failure'
  | 'unavailable'
  | 'local-storage-unavailable'
  | 'quota-exceeded'
  | 'shutting-down'
  | 'lock-timeout'
  | 'lease-lost'
  | 'stale-token'
  | 'fenced-area'
  | 'conflict'
  | 'invalid-lock-request'
  | 'not-owner'
  | 'limit-exceeded'
  | 'missing-dependencies'
  | 'connection-timeout'
  | 'too-many-connections'
  | 'origin-not-allowed'
  | 'too-deep'
  | 'protocol-version'
  /** Quorum durability was asked of a relay that cannot give it (a cluster relay whose PostgreSQL has no synchronous standby). */
  | 'quorum-unsupported'
  /**
   * The document was deleted (HTTP DELETE) since this replica last synced with the relay: the
   * replica belongs to an older incarnation of the name and must not be merged into the new one.
   */
  | 'document-deleted'
  /** No document of that name is stored (HTTP 404): `DELETE /v1/docs/:name` of an unknown one. */
  | 'not-found'
  // Client only, never on the wire: the relay link cannot do it (subdocuments over a socket per document).
  | 'unsupported'
  | 'internal';

export class CapsyncError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CapsyncError';
    this.code = code;
  }
}

/** A peer sent something that does not follow the wire protocol. */
export class ProtocolError extends CapsyncError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ProtocolError';
  }
}

/** Missing, invalid or expired credentials (`unauthorized`), or no right to the document (`forbidden`, `read-only`). */
export class AuthError extends CapsyncError {
  constructor(code: 'unauthorized' | 'forbidden' | 'read-only' | 'permission-revoked', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'AuthError';
  }
}

/**
 * The storage backend failed; nothing was acknowledged for the failed operation. `retryable`:
 * the backend could not be reached (a database connection lost, refused, timed out), nothing
 * was stored, and the same call may succeed later; false for a failure that would repeat.
 */
export class StorageError extends CapsyncError {
  readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super('storage-failure', message, options);
    this.name = 'StorageError';
    this.retryable = options?.retryable ?? false;
  }
}

/**
 * The client's local replica storage (IndexedDB) cannot be used: missing, blocked (private
 * mode), failing (`local-storage-unavailable`) or full (`quota-exceeded`). The document keeps
 * working in memory; changes are not saved locally until it is reopened.
 */
export class LocalStorageError extends CapsyncError {
  constructor(code: 'local-storage-unavailable' | 'quota-exceeded', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'LocalStorageError';
  }
}

/**
 * The document was deleted: a session of its old incarnation (open while it was deleted, or a
 * replica that synced before the delete) is refused, and nothing it sends is stored. Appends
 * made for an old incarnation are refused by the store with it too (DocStore.append). Close
 * code 4410 (DocumentDeleted). A client does not reconnect on it (see the client's `onDeleted`).
 */
export class DocumentDeletedError extends CapsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('document-deleted', message, options);
    this.name = 'DocumentDeletedError';
  }
}

/** A deadline passed before the operation could be confirmed (CP answer: "cannot be sure"). */
export class UnavailableError extends CapsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('unavailable', message, options);
    this.name = 'UnavailableError';
  }
}

/** `acquire` waited `waitMs` and the lock was still held by someone else. Retry later. */
export class LockTimeoutError extends CapsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('lock-timeout', message, options);
    this.name = 'LockTimeoutError';
  }
}

/**
 * The lease is no longer held: it expired (its deadline passed before a renewal was
 * confirmed), was released, or the authority moved on. Stop acting on it.
 */
export class LeaseLostError extends CapsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('lease-lost', message, options);
    this.name = 'LeaseLostError';
  }
}

/**
 * A fenced write carried a token lower than the highest the resource has seen for that key:
 * a newer holder has written since. The write was not applied.
 */
export class StaleTokenError extends CapsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('stale-token', message, options);
    this.name = 'StaleTokenError';
  }
}

/**
 * A conditional fenced write (`ifRev`) found the entry changed since it was read: another
 * write landed in between. Nothing was written; read again and retry.
 */
export class ConflictError extends CapsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('conflict', message, options);
    this.name = 'ConflictError';
  }
}

/**
 * Something another identity owns (a lease, a Yjs client id) was used by someone else: renewing,
 * releasing or fencing with another identity's lease, or writing under another identity's
 * client id. Nothing was changed. The message never names the owner or its token.
 */
export class NotOwnerError extends CapsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('not-owner', message, options);
    this.name = 'NotOwnerError';
  }
}

/**
 * A configured bound was reached (leases per identity, new client ids per update, awareness
 * states, ...). `limit` names it as the relay's flag does (`max-leases-per-identity`), which is
 * also the `limit` label of `capsync_limit_refusals_total`.
 */
export class LimitExceededError extends CapsyncError {
  readonly limit: string;
  constructor(limit: string, message: string, options?: { cause?: unknown }) {
    super('limit-exceeded', message, options);
    this.name = 'LimitExceededError';
    this.limit = limit;
  }
}

/**
 * The other side speaks a protocol version this one does not (see `checkProtocolVersion`).
 * Retrying cannot help until one side is upgraded.
 */
export class ProtocolVersionError extends CapsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('protocol-version', message, options);
    this.name = 'ProtocolVersionError';
  }
}

/** True when `err` is a capsync error, optionally with the given code. */
export function isCapsyncError(err: unknown, code?: ErrorCode): err is CapsyncError {
  return err instanceof CapsyncError && (code === undefined || err.code === code);
}

/** The typed error for a code received on the wire (a lock or fenced-write refusal). */
export function errorFromCode(code: ErrorCode, message: string): CapsyncError {
  switch (code) {
    case 'unavailable':
      return new UnavailableError(message);
    case 'lock-timeout':
      return new LockTimeoutError(message);
    case 'lease-lost':
      return new LeaseLostError(message);
    case 'stale-token':
      return new StaleTokenError(message);
    case 'conflict':
      return new ConflictError(message);
    case 'not-owner':
      return new NotOwnerError(message);
    case 'limit-exceeded':
      // The wire carries no limit name: relays start the message with it ("max-leases-per-identity ...").
      return new LimitExceededError(/^max-[a-z-]+/.exec(message)?.[0] ?? '', message);
    case 'unauthorized':
    case 'forbidden':
    case 'read-only':
    case 'permission-revoked':
      return new AuthError(code, message);
    default:
      return new CapsyncError(code, message);
  }
}
