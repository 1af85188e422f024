import { Backoff, type ClientClaims } from '@capsync/core';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { ChangeFollower, ChangeNote, DocNote, PreviewNote, SharedDocStore } from '../storage/shared-doc-store.js';

/** What a ClusterFollower needs of its document (RelayDoc). */
export interface FollowedDoc {
  /**
   * Applies an update another relay committed (not stored again; sent to this relay's
   * connections). False when the document takes no input now (paused, destroyed): nothing was
   * applied, and the follower reads it again once `resumed` is called.
   */
  applyCommitted(update: Uint8Array): boolean;
  /**
   * Sends an update another relay is committing (a preview) to this relay's connections,
   * without applying it (see RelayDoc.forwardPreview). False when the document takes no input
   * now: the preview is dropped (its commit's note brings the change).
   */
  forwardPreview(update: Uint8Array): boolean;
  /** Records client id claims another relay committed (see DocOwnership.learnCommitted). */
  learnCommittedClaims(claims: ClientClaims[]): void;
  /**
   * Another relay deleted the document: its incarnation is now `incarnation` (see
   * RelayDoc.deletedElsewhere). The follower stops before calling it.
   */
  deletedElsewhere(incarnation: number): void;
}

/**
 * Entries and bytes read at most per catch-up read (at least one entry, whatever its size); a
 * document further behind is read in several, so a read's memory stays bounded however large
 * the updates another relay committed.
 */
export const CATCH_UP_LIMIT = 500;
export const CATCH_UP_BYTES = 8 * 1024 * 1024;

/**
 * Keeps one loaded document of a cluster relay level with what every relay on the shared store
 * commits to it (SharedDocStore): the other relays' changes are applied from their notes, inline
 * when small, or read from the log when they are large or notes were missed.
 *
 * Invariant: every entry up to `appliedThrough` is in the document (positions are dense and in
 * commit order, see SharedDocStore). It starts at the head of the document's load (`attach`)
 * and moves only over entries the document holds: the relay's own (applied before they were
 * appended: its own note only moves the position), another relay's it applied, or what a
 * catch-up read returned. So a compaction through `appliedThrough` never drops an entry the
 * document lacks (RelayDoc caps its compactions there), and a note that does not follow on
 * `appliedThrough` (a note was missed) makes the follower read the log after it.
 *
 * Reads retry with backoff while the store cannot be reached, and stop with the document.
 */
export class ClusterFollower implements ChangeFollower {
  /** Every entry up to it is in the document. */
  appliedThrough = 0;
  /** The incarnation the document loaded: a note or read of another means it was deleted. */
  private incarnation = 0;
  private doc: FollowedDoc | null = null;
  /** Notes that came before the document was attached (while it loaded). */
  private early: DocNote[] = [];
  private reading = false;
  /** The document took no input (paused): reads wait for `resumed`. */
  private stalled = false;
  /** A read is needed: notes were missed, large or not applied. */
  private behind = false;
  /** The highest position noted while a read ran: read again if the read ended before it. */
  private noted = 0;
  private readonly backoff = new Backoff({ baseMs: 50, maxMs: 5_000 });
  private retry: NodeJS.Timeout | null = null;
  private unfollow: (() => void) | null = null;
  private stopped = false;

  private constructor(
    private readonly name: string,
    private readonly store: SharedDocStore,
    private readonly metrics: RelayMetrics,
    private readonly logger: Logger,
  ) {}

  /**
   * Follows `name` on `store`; resolves once its later commits are noted, so load the document
   * after it (then `attach`). Rejects with StorageError when the store cannot listen.
   */
  static async start(name: string, store: SharedDocStore, metrics: RelayMetrics, logger: Logger): Promise<ClusterFollower> {
    const follower = new ClusterFollower(name, store, metrics, logger);
    follower.unfollow = await store.follow(name, follower);
    return follower;
  }

  /** The document loaded, holding every entry up to `head`: notes now apply to it. */
  attach(doc: FollowedDoc, head: number, incarnation: number): void {
    this.doc = doc;
    this.appliedThrough = head;
    this.incarnation = incarnation;
    const early = this.early;
    this.early = [];
    for (const note of early) this.note(note);
    // Notes were missed while it loaded: what the load did not see is read now.
    if (this.behind) {
      this.catchUp();
      void this.readClaims();
    }
  }

  /** The document was reloaded from storage and holds every entry up to `head`. */
  reset(head: number): void {
    this.appliedThrough = head;
  }

  /** The document takes input again: read what could not be applied meanwhile. */
  resumed(): void {
    this.stalled = false;
    if (this.behind) this.catchUp();
  }

  note(note: DocNote): void {
    if (this.stopped) return;
    if (note.kind === 'preview') {
      this.forwardPreview(note);
      return;
    }
    if (!this.doc) {
      this.early.push(note);
      return;
    }
    if (note.kind === 'deleted') {
      // This relay's own delete drops its copy itself (DocRegistry.delete).
      if (!note.own && note.incarnation > this.incarnation) this.deleted(note.incarnation);
      return;
    }
    if (note.kind === 'claims') {
      // Ownership is checked when input is admitted, so claims apply at once, paused or not.
      if (note.own) return;
      if (note.owner !== null) this.doc.learnCommittedClaims([{ owner: note.owner, clientIds: note.clientIds }]);
      else void this.readClaims();
      return;
    }
    this.changes(note);
  }

  private changes(note: ChangeNote): void {
    const doc = this.doc!;
    if (note.last <= this.appliedThrough) return;
    if (this.reading || this.behind) {
      this.noted = Math.max(this.noted, note.last);
      this.catchUp();
      return;
    }
    if (note.first !== this.appliedThrough + 1 || (!note.own && !note.updates)) {
      this.catchUp();
      return;
    }
    if (!note.own) {
      for (const update of note.updates!) {
        if (!doc.applyCommitted(update)) {
          this.stall();
          return;
        }
        this.appliedThrough++;
      }
      this.metrics.clusterNoteLag.observe(Math.max(0, Date.now() - note.sentAt) / 1000);
    }
    this.appliedThrough = note.last;
  }

  /**
   * Sends `update`, which this relay applied and is committing, to the other relays before its
   * commit (SharedDocStore.preview). The caller sends no content whose claim is still in
   * flight: it could lose its race in the store and never be committed (RelayDoc.applyRemote).
   */
  preview(update: Uint8Array): void {
    if (!this.stopped) this.store.preview(this.name, update);
  }

  /**
   * Another relay's preview: sent on to this relay's connections at once; `appliedThrough` stays,
   * as the preview is no entry (its commit is noted and applied later). Previews that come while
   * the document loads are dropped, not kept with the early notes: the notes and reads after the
   * load bring their commits.
   */
  private forwardPreview(note: PreviewNote): void {
    if (note.own || !this.doc) return;
    let forwarded = 0;
    for (const update of note.updates) {
      if (!this.doc.forwardPreview(update)) break;
      forwarded++;
    }
    if (forwarded === 0) return;
    this.metrics.clusterPreviews.inc({ outcome: 'forwarded' }, forwarded);
    this.metrics.clusterPreviewLag.observe(Math.max(0, Date.now() - note.sentAt) / 1000);
  }

  /** Notes may have been lost: the changes and the claims of the document are read again. */
  missed(): void {
    this.catchUp();
    // Before `attach` the reads wait for it (`behind` is set).
    if (this.doc) void this.readClaims();
  }

  /**
   * Reads every claim of the document (a claims note too large to travel, or notes missed). A
   * failed read is left: the next note or reconnection reads again, and until then a claim not
   * known here is caught where claims meet in the store (a conflict, logged and counted).
   */
  private async readClaims(): Promise<void> {
    let owners: [number, string][];
    try {
      owners = await this.store.loadClientOwners(this.name);
    } catch (err) {
      this.logger.warn({ err, doc: this.name }, "reading the document's client id owners failed");
      return;
    }
    if (this.stopped || !this.doc) return;
    const byOwner = new Map<string, number[]>();
    for (const [id, owner] of owners) {
      const ids = byOwner.get(owner) ?? [];
      ids.push(id);
      byOwner.set(owner, ids);
    }
    this.doc.learnCommittedClaims([...byOwner].map(([owner, clientIds]) => ({ owner, clientIds })));
  }

  /** The document was deleted by another relay (a note, or a read that found a newer incarnation). */
  private deleted(incarnation: number): void {
    const doc = this.doc!;
    this.stop();
    doc.deletedElsewhere(incarnation);
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.unfollow?.();
  }

  /** Reads the log after `appliedThrough` until level with what was noted meanwhile. */
  private catchUp(): void {
    this.behind = true;
    if (this.reading || this.stopped || this.stalled || !this.doc || this.retry) return;
    this.reading = true;
    void this.read().finally(() => (this.reading = false));
  }

  private async read(): Promise<void> {
    while (this.behind && !this.stopped) {
      this.behind = false;
      this.noted = 0;
      this.metrics.clusterCatchUpReads.inc();
      let read;
      try {
        read = await this.store.changesAfter(this.name, this.appliedThrough, CATCH_UP_LIMIT, CATCH_UP_BYTES);
      } catch (err) {
        if (this.stopped) return;
        this.behind = true;
        this.logger.warn({ err, doc: this.name }, 'reading what other relays committed failed; trying again');
        this.retry = setTimeout(() => {
          this.retry = null;
          this.catchUp();
        }, this.backoff.next());
        this.retry.unref();
        return;
      }
      this.backoff.reset();
      if (this.stopped) return;
      // A delete whose note was missed: none of the new incarnation's content is applied here.
      if (read.incarnation > this.incarnation) return this.deleted(read.incarnation);
      if (!this.apply(read.snapshot, read.changes)) return; // paused: `resumed` reads again
      // Entries after the last one read were left out by the read's bounds: read them next.
      const last = read.changes.at(-1)?.position;
      if (last !== undefined && last < read.head) this.behind = true;
      else this.appliedThrough = Math.max(this.appliedThrough, read.head);
      if (this.noted > this.appliedThrough) this.behind = true;
    }
  }

  /** Applies a read in order; false (behind) when the document stopped taking input. */
  private apply(snapshot: { data: Uint8Array; through: number } | undefined, changes: { position: number; update: Uint8Array }[]): boolean {
    const doc = this.doc!;
    if (snapshot && snapshot.through > this.appliedThrough) {
      if (!doc.applyCommitted(snapshot.data)) return this.stall();
      this.appliedThrough = snapshot.through;
    }
    for (const change of changes) {
      if (change.position <= this.appliedThrough) continue;
      if (!doc.applyCommitted(change.update)) return this.stall();
      this.appliedThrough = change.position;
    }
    return true;
  }

  private stall(): boolean {
    this.behind = true;
    this.stalled = true;
    return false;
  }
}
