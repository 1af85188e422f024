import type { ErrorCode } from '../errors.js';

/**
 * WebSocket close codes the relay uses. 1xxx are the standard codes where one fits exactly;
 * 4xxx are capsync's own, numbered after the closest HTTP status so they read naturally.
 * A close always carries a reason of the form "<error-code>: <detail>".
 */
export const CloseCode = {
  Normal: 1000,
  /** The relay is shutting down; reconnect later (possibly to another relay). */
  GoingAway: 1001,
  /** A text frame: the protocol is binary only. */
  UnsupportedData: 1003,
  /** A frame over the relay's size limit (enforced while receiving, before buffering it all). */
  MessageTooBig: 1009,
  InternalError: 1011,
  /** Too many connections (in total, or from this client address): retry later, with backoff. */
  TryAgainLater: 1013,
  /** Malformed frame: unknown message type, truncated varint, trailing bytes. */
  BadMessage: 4400,
  /** Missing, invalid or expired token. Do not retry with the same token. */
  Unauthorized: 4401,
  /** Valid token without access to this document. Do not retry. */
  Forbidden: 4403,
  /**
   * The permission on this document was withdrawn while it was open (a refreshed token, or the
   * relay's periodic re-check of the credential: the token's claims or the app's `authorize`
   * answer no longer give access). On a multiplexed socket only that document's session is
   * closed. Do not reopen it with the same token: ask the app's backend for a token that grants
   * access (or tell the user), then open the document again. Local edits stay in the replica.
   */
  PermissionRevoked: 4412,
  /** The connection sent nothing, not even a pong to the relay's pings, for the configured time. */
  ConnectionTimeout: 4408,
  /** Empty, over-long or path-like document name. */
  InvalidDocName: 4404,
  /**
   * An update that touches the fenced (CP) area of a document: only the relay writes there,
   * through fenced `cp.set` requests. Do not resend the same update.
   */
  FencedArea: 4409,
  /**
   * A configured bound was reached (new client ids per update or document, awareness states,
   * ...); the reason names the limit. Do not resend the same input.
   */
  LimitExceeded: 4413,
  /** A Yjs or awareness update that does not decode or cannot be applied. */
  InvalidUpdate: 4422,
  /**
   * The hello's protocol version is outside what this side supports (HTTP 426 Upgrade
   * Required). Do not retry until one side is upgraded.
   */
  ProtocolVersion: 4426,
  /** The connection did not drain its send buffer fast enough. */
  SlowConsumer: 4429,
  /**
   * The document was deleted since this replica last synced (HTTP 410 Gone), or while this
   * session was open: its content belongs to an old incarnation and is never merged into the
   * new one. Do not reconnect with the same replica; clear it (or keep it apart) first.
   */
  DocumentDeleted: 4410,
  /** The document could not be loaded from or saved to storage. */
  StorageUnavailable: 4503,
} as const;

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

/** Name of a close code, for logs and metrics labels ("BadMessage", ...). */
export function closeCodeName(code: number): string {
  for (const [name, value] of Object.entries(CloseCode)) if (value === code) return name;
  return String(code);
}

const closeCodeByError: Partial<Record<ErrorCode, CloseCodeValue>> = {
  'bad-message': CloseCode.BadMessage,
  'unknown-message-type': CloseCode.BadMessage,
  'invalid-update': CloseCode.InvalidUpdate,
  'invalid-awareness': CloseCode.InvalidUpdate,
  'text-frame': CloseCode.UnsupportedData,
  'message-too-large': CloseCode.MessageTooBig,
  'invalid-doc-name': CloseCode.InvalidDocName,
  'fenced-area': CloseCode.FencedArea,
  unauthorized: CloseCode.Unauthorized,
  forbidden: CloseCode.Forbidden,
  'permission-revoked': CloseCode.PermissionRevoked,
  'slow-consumer': CloseCode.SlowConsumer,
  'storage-failure': CloseCode.StorageUnavailable,
  'shutting-down': CloseCode.GoingAway,
  'not-owner': CloseCode.Forbidden,
  'origin-not-allowed': CloseCode.Forbidden,
  'limit-exceeded': CloseCode.LimitExceeded,
  'missing-dependencies': CloseCode.InvalidUpdate,
  'connection-timeout': CloseCode.ConnectionTimeout,
  'too-many-connections': CloseCode.TryAgainLater,
  // An authorization callback that failed or timed out: the client tries again later.
  unavailable: CloseCode.TryAgainLater,
  'protocol-version': CloseCode.ProtocolVersion,
  'document-deleted': CloseCode.DocumentDeleted,
};

/** The close code for an error that ends a connection. */
export function closeCodeFor(code: ErrorCode): CloseCodeValue {
  return closeCodeByError[code] ?? CloseCode.InternalError;
}

/**
 * The close reason for an error: "<code>: <message>", cut to the 123 bytes a close frame allows.
 */
export function closeReasonFor(code: ErrorCode, message: string): string {
  const full = `${code}: ${message}`;
  const bytes = new TextEncoder().encode(full);
  if (bytes.length <= 123) return full;
  // Cut on a character boundary: decode a prefix and drop a possibly split last char.
  return new TextDecoder().decode(bytes.subarray(0, 120)).replace(/\uFFFD$/, '') + '...';
}

/** Parses a close reason made by `closeReasonFor` back into its error code, if it is one. */
export function errorCodeFromReason(reason: string): ErrorCode | undefined {
  const m = /^([a-z-]+): /.exec(reason);
  return m ? (m[1] as ErrorCode) : undefined;
}
