import { CapsyncError, type DocStore } from '@capsync/core';
import type { HookRunner } from '../hooks/hook-runner.js';
import type { RelayMetrics } from '../metrics.js';
import type { DocRegistry } from './doc-registry.js';

/** What deleting a document needs of the relay. */
export interface DocDeletionDeps {
  store: DocStore;
  registry: DocRegistry;
  metrics: RelayMetrics;
  hooks?: readonly HookRunner[] | undefined;
}

/** What `deleteDocument` did. */
export interface DeletedDocument {
  docName: string;
  /** The name's incarnation from now on (DocStore): a new document of the name starts empty with it. */
  incarnation: number;
}

/**
 * Deletes document `name` (`DELETE /v1/docs/:name`, after the caller checked write access):
 * its snapshot, log and client id owners go, its incarnation is raised (DocStore.delete), the
 * copy this relay has loaded is dropped and its sessions are closed with 'document-deleted'
 * (4410; DocRegistry.delete). In a cluster the store notes the delete to the other relays,
 * which drop their copies and close their sessions too (ClusterFollower). A replica that synced
 * before the delete is refused when it connects again (ClientSessionHost.hello), so it cannot
 * bring the document back.
 *
 * Not in a mesh: each relay of a mesh has its own store, and this deletes the document from
 * this relay's only. The links of peer relays to it are closed like any session, and a peer
 * that still holds the document syncs it back into the new incarnation when its link reopens.
 * To delete a document from a mesh, delete it on every relay while none of them links to it, or
 * do not use deletes with a mesh (a mesh-wide delete needs the incarnation carried on peer links,
 * which they do not do yet).
 *
 * Throws CapsyncError 'not-found' (HTTP 404) when nothing is stored nor loaded under `name`, and
 * StorageError when the store fails (then nothing was deleted). The backend's
 * `onDocumentDeleted` hook is told after the delete committed.
 */
export async function deleteDocument(deps: DocDeletionDeps, name: string, identity: string | undefined): Promise<DeletedDocument> {
  if (!(await exists(deps, name))) throw new CapsyncError('not-found', `no document "${name}"`);
  const incarnation = await deps.registry.delete(name, () => deps.store.delete(name));
  deps.metrics.docDeletes.inc();
  for (const runner of deps.hooks ?? []) void runner.run('onDocumentDeleted', { docName: name, identity, incarnation });
  return { docName: name, incarnation };
}

/**
 * Whether anything is stored or loaded under `name`: a loaded copy with content, or stored
 * updates. Reads the stored document when it is not loaded (a delete is rare; a cheaper
 * existence read would be one more DocStore method for every backend).
 */
async function exists(deps: DocDeletionDeps, name: string): Promise<boolean> {
  const loaded = await deps.registry.peek(name)?.catch(() => undefined);
  if (loaded && loaded.doc.store.clients.size > 0) return true;
  return (await deps.store.load(name)).updates.length > 0;
}
