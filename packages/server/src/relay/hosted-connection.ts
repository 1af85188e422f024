import type { DocSession } from '@capsync/core';
import type { DocPeer, RelayDoc } from './relay-doc.js';

/**
 * What a session host needs of the connection it serves (RelayConnection, or a PeerLink's
 * current socket): the document's peer that its updates and awareness come from.
 */
export interface HostedConnection extends DocPeer {
  readonly docName: string;
  /** The connection's document once loaded (the session handles no message before). */
  readonly document: RelayDoc | null;
  /** The session ended (see SessionHooks.ended): release the document, count the close. */
  ended(byUs: { code: number; reason: string } | null): void;
}

/**
 * The host of a served connection's session: ClientSessionHost, or PeerSessionHost for a peer
 * relay that dialled in. The connection holds the document; the host runs the session on it.
 */
export interface ConnectionHost {
  readonly session: DocSession;
  /** The document is loaded and the connection is one of its peers: starts the session on it. */
  open(doc: RelayDoc): void;
}
