/**
 * Transaction origins of changes to a relay's documents, so every change is attributed and
 * nothing echoes back to where it came from.
 */

/** Something that sent us document updates: a WebSocket connection, or an HTTP request. */
export interface UpdateSource {
  readonly kind: 'connection' | 'http';
}

/**
 * Origin of an update received from the network. Its raw bytes are what gets stored and
 * forwarded: unlike the doc's 'update' event, they include structs Yjs holds back as pending
 * (missing dependencies), so nothing acknowledged is dropped.
 */
export class RemoteOrigin {
  constructor(
    readonly source: UpdateSource,
    readonly update: Uint8Array,
  ) {}
}

/** Origin of awareness changes the relay makes itself (removing a closed connection's states). */
export const RELAY_ORIGIN = { kind: 'relay' } as const;
