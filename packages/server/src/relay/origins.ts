/**
 * Transaction origins of changes to a relay's documents, so every change is attributed and
 * nothing echoes back to where it came from.
 */

/**
 * Something that sent us document updates: a WebSocket connection (a client's or a peer
 * relay's), an HTTP request, the lock authority relay answering a forwarded fenced write, or
 * another relay of the cluster that committed it to the shared store.
 */
export interface UpdateSource {
  readonly kind: 'connection' | 'http' | 'authority' | 'cluster';
}

/**
 * Origin of an update received from the network. The raw update is stored by `RelayDoc.receive`;
 * the doc's update event, seeing this origin, forwards what integrated to every peer but
 * `source`.
 */
export class RemoteOrigin {
  constructor(readonly source: UpdateSource) {}
}

/** Origin of awareness changes the relay makes itself (removing a closed connection's states). */
export const RELAY_AWARENESS_ORIGIN = { kind: 'relay' } as const;
