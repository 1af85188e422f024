import { CapsyncError, INCARNATIONS_CAPABILITY, INCARNATION_PREFIX, deletedIncarnationOf } from '@capsync/core';
import type { StorageAdapter } from '../storage/storage-adapter.js';
import type { LocalReplica } from './local-replica.js';

/** What a DocIncarnation needs of its document handle. */
export interface DocIncarnationHost {
  /** The handle's stored replica (loaded before any connection). */
  readonly replica: LocalReplica;
  /** Whether the replica holds content (its Y.Doc has structs). */
  holdsContent(): boolean;
  /** Stops saving the document's changes (the replica is being erased). */
  stopSaving(): void;
  error(err: CapsyncError): void;
}

/**
 * A document replica's side of document deletion (see the relay's deleteDocument). The relay
 * tells the replica the document's incarnation (asked for with INCARNATIONS_CAPABILITY) and the
 * replica stores it; on its next connection a replica that holds content announces it back
 * (`incarnation:<n>`), and a relay whose document was deleted since refuses it with
 * 'document-deleted' (4410) before taking any of its updates. An empty replica announces none:
 * it has nothing to bring back and joins the current incarnation. A replica that never learned
 * one (written offline only, or stored by an older client) announces none either: its content is
 * taken as new.
 *
 * On that refusal (or a delete while connected: the same close) the link has already stopped (a
 * fatal refusal, reported as DocumentDeletedError); `deleted` then erases the stored replica,
 * pending edits included, unless the app asked to keep it (`onDeleted: 'keep'`). Only when it is
 * sure the relay's incarnation (named in the close reason) is newer than the one the replica
 * learned: a replica that never learned one, or a relay of an older incarnation (restarted on
 * memory storage, its store restored from a backup), never has it erased.
 */
export class DocIncarnation {
  private handled = false;
  /** Set once the stored replica is being erased; resolves when it is. */
  cleared: Promise<void> | null = null;

  constructor(
    private readonly host: DocIncarnationHost,
    private readonly onDeleted: 'clear' | 'keep',
    private readonly storage: StorageAdapter,
    private readonly replicaName: string,
    private readonly label: string,
  ) {}

  /** The hello (or session-open) capabilities of the next connection. */
  capabilities(): string[] {
    const known = this.host.replica.incarnation;
    return known !== undefined && this.host.holdsContent() ? [INCARNATIONS_CAPABILITY, INCARNATION_PREFIX + known] : [INCARNATIONS_CAPABILITY];
  }

  /** The relay announced the document's incarnation: stored with the replica. */
  learned(incarnation: number): void {
    if (!this.handled) this.host.replica.setIncarnation(incarnation);
  }

  /** The relay closed the document with 'document-deleted' (`reason`: the close reason). */
  deleted(reason: string): void {
    if (this.handled) return;
    const now = deletedIncarnationOf(reason);
    const known = this.host.replica.incarnation;
    if (now === undefined || known === undefined || now <= known) return;
    this.handled = true;
    if (this.onDeleted === 'keep') return;
    this.host.stopSaving();
    this.cleared = this.host.replica.erase(this.storage, this.replicaName).catch((err: unknown) => {
      this.host.error(new CapsyncError('local-storage-unavailable', `clearing the replica of deleted "${this.label}" failed`, { cause: err }));
    });
  }
}
