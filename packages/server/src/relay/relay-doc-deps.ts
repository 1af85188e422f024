import type { CapsyncError, CompactionPolicy, DocStore } from '@capsync/core';
import type { ChangeTiming } from '../hooks/doc-hooks.js';
import type { RelayDoc } from './relay-doc.js';
import type { HookRunner } from '../hooks/hook-runner.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { AwarenessLimits } from './doc-awareness.js';
import type { ClaimsPeer } from './doc-ownership.js';
import type { StorageOutage } from './storage-outage.js';
import type { UpdateSource } from './origins.js';
import type { UpdateLimits } from './update-admission.js';

/*
 * The two contracts of a RelayDoc with what is around it: what it needs of the relay
 * (RelayDocDeps) and what it needs of each connection it serves (DocPeer). Re-exported by
 * relay-doc.ts; apart so the document's parts (doc-load, doc-appends, doc-broadcast) name them
 * without importing the document.
 */

/** What a document needs from the relay around it. */
export interface RelayDocDeps {
  store: DocStore;
  compaction: CompactionPolicy;
  metrics: RelayMetrics;
  logger: Logger;
  /** Relays that must hold a change for quorum durability (a majority of the mesh, this relay included). */
  majority: number;
  limits: UpdateLimits;
  /** Client ids are owned by identities (a relay with auth); an open relay has no identities. */
  ownership: boolean;
  /** Bounds on the document's awareness. */
  awareness: AwarenessLimits;
  /** Appends waiting for storage to be reachable again (see DocAppends). */
  outage: StorageOutage;
  /** In a cluster: send clients' changes to the other relays before their commit (RelayOptions.clusterPreviews). */
  clusterPreviews?: boolean | undefined;
  /** The backend's hooks (createRelay `hooks`), if any, and how often `onChange` is called. */
  hooks?: readonly HookRunner[] | undefined;
  changeTiming?: ChangeTiming | undefined;
  /**
   * Told when a loaded document finds it was deleted elsewhere (RelayDoc.deletedElsewhere): the
   * DocRegistry sets it, to drop the document and close its sessions.
   */
  deleted?: ((doc: RelayDoc, incarnation?: number) => void) | undefined;
}

/** A recipient of a document's broadcasts (a connection). */
export interface DocPeer extends UpdateSource, ClaimsPeer {
  /** Sends a Yjs update to the peer (it may drop the peer if its buffer is full). */
  sendUpdate(update: Uint8Array): void;
  sendAwareness(update: Uint8Array): void;
  /** Called when the document resumes after a pause (loading, recovery), to process queued input. */
  resume(): void;
  /**
   * The document was deleted: close this session with the error's code ('document-deleted',
   * 4410). Connections (clients' and peer relays' inbound links) have it, and server documents
   * (their flush rejects with it from then on). A peer without it is left to notice the end by
   * itself: this relay's outbound PeerLink is closed when the registry reports the document
   * unloaded (PeerMesh).
   */
  closeDeleted?(err: CapsyncError): void;
  /** The peer relay on the other end, when this is a relay-to-relay link (changes it sends are attributed to it). */
  readonly peerRelayId?: string | undefined;
}

