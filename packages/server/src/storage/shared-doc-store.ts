import type { DocStore } from '@capsync/core';

/**
 * A `DocStore` that several relays share (PostgreSQL): every relay on it is one cluster. Besides
 * the DocStore contract it tells a relay what the others commit, changes and client id claims
 * (`follow`), and lets it read what it missed (`changesAfter`, `loadClientOwners`). The relay's side is ClusterFollower (relay/cluster-follower.ts).
 *
 * Contract, on top of DocStore's:
 * - Positions of a document are dense (1, 2, 3, ... from some start; a compaction or delete never
 *   makes a gap) and assigned in commit order: whoever has seen position P has seen every entry
 *   up to P, so reading after P misses nothing, ever, whatever commits concurrently.
 * - `follow(name, f)`: `f.note` gets a note of every later commit to `name` (by any relay, this
 *   one included: `own`), in position order, until unfollowed; or, when notes may have been lost,
 *   `f.missed()`, after which notes flow again and a `changesAfter` read finds the rest. It
 *   resolves once every commit after that moment is noted: a load that starts after it returns
 *   a head from which notes (or a read) continue without a gap.
 * - `preview(name, update)`: best effort, the other relays following `name` get `update` (one
 *   this relay applied and is committing) as a `preview` note before it commits, to apply and
 *   send on at once. A preview may be dropped, may come after the commit's note, or may never be
 *   followed by a commit (the writer failed first): it never counts as committed.
 */
export interface SharedDocStore extends DocStore {
  /** At most `limit` entries and `maxBytes` in all per read (but always the first). */
  changesAfter(name: string, position: number, limit?: number, maxBytes?: number): Promise<DocChanges>;
  follow(name: string, follower: ChangeFollower): Promise<() => void>;
  /** Never throws nor waits: what cannot be sent is dropped (see the contract above). */
  preview(name: string, update: Uint8Array): void;
  /**
   * Why a commit is not also durable on a synchronous standby (so quorum durability cannot be
   * given), or null when every commit waits for one. Rejects with StorageError when the store
   * cannot be asked.
   */
  synchronousReplication(): Promise<string | null>;
}

/** Whether `store` is shared by a cluster (see SharedDocStore). */
export function isSharedDocStore(store: DocStore): store is SharedDocStore {
  const s = store as Partial<SharedDocStore>;
  return typeof s.changesAfter === 'function' && typeof s.follow === 'function';
}

/** What a catch-up read returns (`SharedDocStore.changesAfter`). */
export interface DocChanges {
  /**
   * The document's snapshot, when the position asked after is before its `through`: the log
   * entries up to `through` are gone, merged into it. Apply it first.
   */
  snapshot?: { data: Uint8Array; through: number };
  /** Log entries after the position asked after (and after the snapshot), in position order. */
  changes: { position: number; update: Uint8Array }[];
  /**
   * The document's head (last position) as of the read, 0 for an unknown document. Entries up
   * to it after the last of `changes` were left out by the read's bounds: read again after it.
   */
  head: number;
  /**
   * The document's incarnation as of the read: another than the follower's means the document
   * was deleted since it loaded (a `deleted` note that was missed).
   */
  incarnation: number;
}

/**
 * What one commit added to one document: entries `first`..`last`. The updates travel with the
 * note when they are small; else they are read with `changesAfter`.
 */
export interface ChangeNote {
  kind: 'changes';
  doc: string;
  first: number;
  last: number;
  /** The updates of `first`..`last` in order, when small enough to travel inline; else null (read them). */
  updates: Uint8Array[] | null;
  /** Committed by this relay's own store: already in its document. */
  own: boolean;
  /** When the committing relay sent the commit (its Date.now()): for the notification lag. */
  sentAt: number;
}

/**
 * A commit of client id claims (`claimClients`) to one document: `owner` holds `clientIds` (or,
 * when they were too large to travel inline, both null: read them with `loadClientOwners`). Noted
 * before the changes written under them, as claims commit no later than those.
 */
export type ClaimsNote = { kind: 'claims'; doc: string; own: boolean } & ({ owner: string; clientIds: number[] } | { owner: null; clientIds: null });

/**
 * Updates another relay applied and is committing, sent before the commit (see
 * SharedDocStore.preview): content to apply and send on, never a position. Its commit is noted
 * later as usual (or, should the writer fail first, never: the writer's client sends it again).
 */
export interface PreviewNote {
  kind: 'preview';
  doc: string;
  updates: Uint8Array[];
  own: boolean;
  sentAt: number;
}

/**
 * A relay deleted the document (DocStore.delete): its incarnation is now `incarnation`. A relay
 * that has it loaded drops its copy and closes its sessions (DocumentDeleted).
 */
export interface DeletedNote {
  kind: 'deleted';
  doc: string;
  incarnation: number;
  own: boolean;
}

export type DocNote = ChangeNote | ClaimsNote | PreviewNote | DeletedNote;

/** Receives a followed document's notes, and learns when notes may have been missed. */
export interface ChangeFollower {
  /** A note of the document, in commit order with the other notes of the document. */
  note(note: DocNote): void;
  /** Notes may have been lost (the listening connection was lost and is back): read the log. */
  missed(): void;
}
