import * as Y from 'yjs';
import {
  CapsyncError,
  deletedAt,
  DocumentDeletedError,
  NotOwnerError,
  ProtocolError,
  encodeIntegratedState,
  hasPending,
  isEmptyUpdate,
  type ClientClaims,
  type AppliedUpdate,
} from '@capsync/core';
import { DocReplication } from '../mesh/replication.js';
import { DocAppends } from './doc-appends.js';
import { DocBroadcast } from './doc-broadcast.js';
import { FencedWrites, type FencedOutcome } from './fenced-writes.js';
import { ClientOwners } from './client-owners.js';
import { BackgroundCompaction, loadDoc } from './doc-load.js';
import { ClusterFollower, type FollowedDoc } from './cluster-follower.js';
import { DEFAULT_CHANGE_TIMING, DocHooks, seedNewDocument } from '../hooks/doc-hooks.js';
import { isSharedDocStore } from '../storage/shared-doc-store.js';
import type { DocWriter } from './doc-writer.js';
import { DocAwareness } from './doc-awareness.js';
import { AwarenessHook } from '../hooks/awareness-hook.js';
import { PendingUpdates } from './pending-updates.js';
import { PeerSet } from './peer-set.js';
import { DocOwnership } from './doc-ownership.js';
import type { DocPeer, RelayDocDeps } from './relay-doc-deps.js';
import { RemoteOrigin, type UpdateSource } from './origins.js';
import { StorageRetries } from './storage-retries.js';
import { WholeState } from './whole-state.js';
import { checkRemoteUpdate, integrated, type Admission, type UpdateWriter } from './update-admission.js';

export type { DocPeer, RelayDocDeps } from './relay-doc-deps.js';

// Over ~400 lines (2026-12-07, 534 on the 8th, ~575 with deletion's closeDeleted/deletedElsewhere), 607 on the 8th with the reload's durable mark and the paused refusal, 630 with whenTakingInput (server documents wait for a reload): this file is the document's wiring of its parts
// (appends, retries, broadcast, ownership, whole state, fenced writes, the cluster follower, the
// backend's hooks) and the order they run in; most of its length is the contracts' doc comments.
// Recovery (`recover`), the fenced commit (`commitUnseen`) and the cluster input
// (`applyCommitted`, `forwardPreview`) are the next to move out into modules of their own.
/**
 * One loaded document: the Y.Doc, its awareness, its connections, and the pipeline that
 * makes every change durable (append to the store, compact past a threshold) and fans it
 * out to the other connections.
 *
 * Invariants:
 * - Remote updates are validated and admitted (client id caps and ownership, `admitUpdate`)
 *   before they are applied.
 * - What is stored is what integrated: an update that integrates completely is stored as
 *   received (with the pending content it completed, if any); otherwise the document's update
 *   event of the apply. An append that storage refuses makes the document reload from storage,
 *   so memory never holds acknowledged-looking content that storage lacks; one that cannot reach
 *   storage (a retryable StorageError) is tried again until it commits, unacknowledged meanwhile
 *   (StorageRetries). Content Yjs holds back as pending (missing dependencies) stays in memory only,
 *   bounded in bytes and time (`PendingUpdates`): it is stored, and its sender acknowledged,
 *   when a later update completes it (a legit out-of-order delivery, e.g. one user's two tabs);
 *   if its dependencies do not arrive within `--pending-timeout-ms` the sender is refused with
 *   'missing-dependencies' and the content is dropped, never stored.
 * - Stores are appended in apply order, so "update N is durable" implies all before it are.
 * - While `paused` (recovering from an update that failed to integrate) no input is
 *   processed; connections queue it and are resumed afterwards.
 *
 * Its parts, each a module: admission (update-admission.ts), pending content, client id
 * ownership, appends to storage (DocAppends), fan-out (DocBroadcast), fenced writes
 * (FencedWrites), compaction and loading (doc-load.ts). What stays here is their order: apply,
 * store, broadcast, and the pause that recovery and fenced writes share.
 */
export class RelayDoc implements FollowedDoc {
  doc: Y.Doc;
  /** Presence: bounded, each state owned by the connection that set it (see DocAwareness). */
  readonly awareness: DocAwareness;
  /** Its connections; one leaving lets go of the client ids it declared (ClientOwners.release). */
  readonly peers: Set<DocPeer> = new PeerSet<DocPeer>((peer) => this.ownership.owners.release(peer));
  /** Which relays durably hold which changes (quorum durability, replication lag). */
  readonly replication: DocReplication;
  paused = false;
  /**
   * The incarnation of the name this copy holds (DocStore): what its appends and compactions are
   * made for, and what a client's replica must have synced at (ClientSessionHost.hello).
   */
  incarnation = 0;
  /** The document was deleted: its sessions are closed and it takes nothing more (`closeDeleted`). */
  deleted = false;
  /** Merges the log into a snapshot in the background (see BackgroundCompaction). */
  private readonly compaction: BackgroundCompaction;
  private destroyed = false;
  /** Waiting for the document to take input (whenTakingInput). */
  private readonly inputWaiters: (() => void)[] = [];
  /** Sends what integrated to the other peers, once per event-loop turn (see DocBroadcast). */
  private readonly broadcast: DocBroadcast;
  /** Appends to storage, in apply order (see DocAppends). */
  private readonly appends: DocAppends;
  /** The commit of the latest change made on the relay itself (see `onLocalUpdate`). */
  private lastLocalPersist: Promise<void> = Promise.resolve();
  /** Fenced writes, one at a time (see FencedWrites). */
  private readonly fenced = new FencedWrites({
    current: () => (this.paused || this.destroyed ? null : this.doc),
    storageReachable: () => !this.deps.outage.unavailable,
    commitUnseen: (change) => this.commitUnseen(change),
  });
  /** What the running `applyRemote` integrated (its update events), to store. */
  private applying: Uint8Array[] | null = null;
  private readonly pending: PendingUpdates;
  /** Client id claims: made as content integrates, exchanged with peer relays. */
  private readonly ownership: DocOwnership;
  /** The whole state's encoding, shared by every reader that has nothing yet. */
  private readonly wholeState = new WholeState();
  /** The backend's onChange and onStoreDocument for this document, with hooks configured. */
  private readonly hooks: DocHooks[];

  private constructor(
    readonly name: string,
    doc: Y.Doc,
    owners: ClientOwners,
    private readonly deps: RelayDocDeps,
    private readonly retries: StorageRetries,
    /** In a cluster (a store relays share): applies what the other relays commit. */
    private readonly follower: ClusterFollower | null,
  ) {
    this.doc = doc;
    this.compaction = new BackgroundCompaction(
      name,
      deps,
      () => (this.paused || this.destroyed ? null : this.doc),
      () => this.destroyed,
      follower ? () => follower.appliedThrough : undefined,
    );
    const ownership = new DocOwnership(name, owners, deps.metrics, deps.logger);
    this.ownership = ownership;
    this.pending = new PendingUpdates(() => this.doc, deps.limits, deps.metrics, (sent) => ownership.claimLate(sent));
    this.replication = new DocReplication(deps.majority);
    // One DocHooks per set of hooks (the relay's webhooks, the app's): neither waits on the other.
    this.hooks = (deps.hooks ?? []).map((runner) => new DocHooks(name, runner, deps.changeTiming ?? DEFAULT_CHANGE_TIMING, () => this.encodeState()));
    const hooks = this.hooks;
    this.appends = new DocAppends(name, deps, this.replication, this.compaction, retries, (err) => void this.recover(err), (p) => hooks.forEach((h) => h.committed(p)));
    this.broadcast = new DocBroadcast(this.peers, ownership);
    this.attach(doc);
    const awarenessRunner = deps.hooks?.find((r) => r.has('onAwareness'));
    const awarenessHook = awarenessRunner ? new AwarenessHook(name, awarenessRunner, deps.awareness.maxStateBytes) : undefined;
    this.awareness = new DocAwareness(doc, this.peers, deps.awareness, deps.metrics, awarenessHook);
  }

  /**
   * Loads a document completely from storage before anything may see it; merges the log into
   * a snapshot when it is past the compaction threshold, so load time stays bounded.
   */
  static async load(name: string, deps: RelayDocDeps): Promise<RelayDoc> {
    // One queue of writes waiting for storage to be reachable, for the claims and the appends.
    const retries = new StorageRetries(deps.outage);
    // Following before loading: what the load does not see is noted (ClusterFollower).
    const follower = isSharedDocStore(deps.store) ? await ClusterFollower.start(name, deps.store, deps.metrics, deps.logger) : null;
    try {
      const [{ doc, head, incarnation }, owners] = await Promise.all([loadDoc(name, deps), ClientOwners.load(name, deps.store, deps.logger, retries)]);
      const loaded = new RelayDoc(name, doc, owners, deps, retries, follower);
      loaded.setIncarnation(incarnation);
      follower?.attach(loaded, head, incarnation);
      // Applied to the loaded document, whose listener stores it as the relay's change.
      if (head === 0 && doc.store.clients.size === 0) {
        for (const runner of deps.hooks ?? []) if (runner.has('onLoadDocument')) await seedNewDocument(name, doc, runner);
      }
      return loaded;
    } catch (err) {
      follower?.stop();
      throw err;
    }
  }

  /**
   * The one way an update from the network enters the document: validates it for `writer`,
   * then applies it (see `applyRemote`), and counts both in the metrics. The checks: it must
   * decode, pass the forgery checks of `validateUpdateFor`, stay out of the fenced area (only
   * `writeFenced` writes there), stay within the client id caps and write only under client
   * ids the writer's subject owns or nobody owns (on a relay with auth; see `admitUpdate`);
   * an update that would wait for missing dependencies must also fit the pending caps
   * (`PendingUpdates.admit`, the per-connection one counted against `writer.source`). Trusted
   * writers (a peer relay, the lock authority) replicate everyone's content, fenced values
   * included: they are checked for integrity only. See DocWriter for what each kind is
   * checked and timed for. Throws ProtocolError ('invalid-update' or 'fenced-area'),
   * LimitExceededError or NotOwnerError, having changed nothing; or ProtocolError
   * ('invalid-update') when Yjs fails to integrate it (the document then recovers).
   * Returns when it is durable and the client ids its ack reports.
   */
  receive(update: Uint8Array, writer: DocWriter): AppliedUpdate {
    // Reloading from storage (`recover`): applied now, it would land in the document being
    // replaced, be stored and acknowledged, and be missing from the live one (and from storage
    // after its next compaction). Sessions queue their input meanwhile; the others (HTTP,
    // fenced writes forwarded to the lock authority, server-side handles) are refused, to retry.
    if (this.paused) throw new CapsyncError('unavailable', `document "${this.name}" is reloading from storage; retry`);
    const started = performance.now();
    const { metrics, ownership, limits } = this.deps;
    const trusted = writer.kind === 'peer' || writer.kind === 'authority';
    const subject = writer.kind === 'authority' ? undefined : writer.subject;
    // Kept by the admission (PendingUpdates holds it while content waits): one per update.
    const admitted: UpdateWriter = { trusted, identity: ownership ? subject : null, declared: writer.kind === 'client' ? writer.declared : undefined };
    let admission: Admission;
    try {
      admission = checkRemoteUpdate(this.doc, update, admitted, { limits, metrics, owners: this.ownership.owners, pending: this.pending, source: writer.source });
    } catch (err) {
      if (writer.kind === 'client' && err instanceof CapsyncError && err.code === 'fenced-area') metrics.fencingRejections.inc({ reason: 'fenced-area' });
      throw err;
    }
    // Only what clients wrote goes to other cluster relays before its commit: a peer's content
    // is not this relay's to commit, and the authority's fenced writes are seen once committed.
    const previewed = writer.kind === 'client' || writer.kind === 'http';
    const durable = this.applyRemote(update, writer.source, admission, previewed);
    if (writer.kind === 'client' || writer.kind === 'http' || (writer.kind === 'peer' && writer.end === 'accepted')) {
      metrics.applySeconds.observe((performance.now() - started) / 1000);
    }
    return { durable, clients: admission.clients };
  }

  /**
   * A writing client of `subject` declared in the hello of its connection `holder` (one of
   * `peers`) the client ids it writes under: held for `subject` until it writes under them or a
   * while after `holder` leaves (ClientOwners.announce).
   */
  announceWriters(subject: string, clientIds: ReadonlySet<number>, holder: DocPeer): void {
    if (this.deps.ownership && this.peers.has(holder)) this.ownership.owners.announce(subject, clientIds, holder);
  }

  /**
   * Writes a fenced value into the document's CP area, as the relay, if `token` is at least
   * the entry's current token and (with `ifRev`) the entry is still at that revision (see
   * FencedWrites); nobody sees it before it is committed (`commitUnseen`). The caller has
   * checked the lease with the lock authority.
   */
  writeFenced(key: string, value: unknown, token: number, ifRev?: number): Promise<FencedOutcome> {
    return this.fenced.write(key, value, token, ifRev);
  }

  /**
   * A change on the relay itself that nobody sees before it is committed: input (sync requests
   * included) and broadcasts are held from the change until its commit, so a relay that crashes
   * in between comes back without a value that replicas already hold (they would send it back,
   * and the relay would refuse its own struct as a write into the fenced area). If the commit
   * fails, the document is reloaded from storage, which drops the change.
   */
  private async commitUnseen(change: (doc: Y.Doc) => void): Promise<boolean> {
    this.paused = true;
    this.broadcast.held = true;
    const batched = this.broadcast.size;
    this.lastLocalPersist = Promise.resolve();
    change(this.doc);
    try {
      await this.lastLocalPersist;
    } catch (err) {
      // Never published: drop it from the broadcast queue and from memory (reload).
      this.broadcast.truncate(batched);
      this.broadcast.held = false;
      this.paused = false;
      void this.recover(err);
      return false;
    }
    this.broadcast.held = false;
    this.paused = false;
    this.broadcast.flush();
    this.resumeInput();
    return true;
  }

  /** Input processing resumes after a pause: the connections' queued input, the cluster's notes. */
  private resumeInput(): void {
    for (const peer of this.peers) peer.resume();
    this.follower?.resumed();
    this.wakeInputWaiters();
  }

  /**
   * Resolves once the document takes input (at once when it does): not while it reloads from
   * storage or commits a fenced write (its content then is the one being replaced, or holds a
   * value not yet durable). Also when it is destroyed; `unloaded` then says so.
   */
  whenTakingInput(): Promise<void> {
    if (!this.paused || this.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.inputWaiters.push(resolve));
  }

  /** Destroyed (unloaded, deleted): a new copy must be acquired to use the document. */
  get unloaded(): boolean {
    return this.destroyed;
  }

  private wakeInputWaiters(): void {
    for (const wake of this.inputWaiters.splice(0)) wake();
  }

  /**
   * Applies `update` and returns what integrated (the document's update events: sent on, to be
   * stored by the caller), or the error Yjs threw: then nothing of it goes out, and the document
   * recovers from storage in the background, as it may hold part of it.
   */
  private integrate(update: Uint8Array, origin: RemoteOrigin): Uint8Array[] | Error {
    const batched = this.broadcast.size;
    const changes: Uint8Array[] = [];
    this.applying = changes;
    try {
      Y.applyUpdate(this.doc, update, origin);
    } catch (err) {
      // Yjs may have emitted the failed transaction's update event before rethrowing.
      this.broadcast.truncate(batched);
      void this.recover(err);
      return err instanceof Error ? err : new Error(String(err));
    } finally {
      this.applying = null;
    }
    return changes;
  }

  /**
   * Sends an update another relay of the cluster is committing (a preview, see ClusterFollower)
   * to this relay's connections, without applying it here: the document, what this relay
   * stores and what its compactions keep hold committed content only. A client's edit built on
   * a preview then waits here (pending) until the preview's commit is applied, so this relay
   * never commits, nor acknowledges, an edit whose dependencies are not committed (were they
   * lost with their relay, the edit would be unreadable). False while the document takes no input.
   */
  forwardPreview(update: Uint8Array): boolean {
    if (this.paused || this.destroyed) return false;
    this.broadcast.queue(update, null);
    return true;
  }

  /**
   * Applies an update another relay of the cluster committed (ClusterFollower): durable already,
   * so not stored again; sent to this relay's connections like any change. Content of this
   * relay's that waited for it (pending) integrates now and is stored now. False, having applied
   * nothing, while the document takes no input (paused, destroyed).
   */
  applyCommitted(update: Uint8Array): boolean {
    if (this.paused || this.destroyed) return false;
    const hadPending = hasPending(this.doc);
    // A failure: stored by a relay that could integrate it, so this document went astray (reloaded).
    const changes = this.integrate(update, CLUSTER_ORIGIN);
    if (changes instanceof Error) return false;
    if (hadPending && changes.length > 0) {
      this.pending.settle(this.appends.append(changes.length === 1 ? changes[0]! : Y.mergeUpdates(changes)));
    } else {
      // Durable already: once this relay's earlier appends are too, all it applied is (quorum barriers wait for it).
      const applied = this.replication.applied;
      this.appends.last.then(() => this.replication.recordLocalDurable(applied), () => {});
    }
    return true;
  }

  /** Sends queued broadcasts now (so a requester has a change before the reply about it). */
  flushBroadcasts(): void {
    this.broadcast.flush();
  }

  /** Asks every peer relay linked for this document for a fresh acknowledgement (see DocBroadcast.requestPeerAcks). */
  requestPeerAcks(): void {
    this.broadcast.requestPeerAcks();
  }

  /**
   * Applies a remote update `receive` admitted, records the client ids it claimed, and stores
   * what integrated (the doc's update event, which peers get too); content left pending waits
   * in `PendingUpdates` (see the invariants above). Throws ProtocolError('invalid-update') if
   * Yjs fails to integrate it; the document then recovers from storage in the background.
   * The promise resolves once the update is integrated and committed to storage; it rejects
   * with StorageError, or with CapsyncError 'missing-dependencies' / 'limit-exceeded' when the
   * update's missing dependencies did not arrive in time or too much content waits for them.
   */
  private applyRemote(update: Uint8Array, source: UpdateSource, admission: Admission, previewed: boolean): Promise<void> {
    // Another identity's content waiting under the ids this claims must never integrate there.
    this.repend(this.ownership.evictFor(admission, this.pending));
    const hadPending = hasPending(this.doc);
    const statesBefore = this.ownership.statesBefore(this.doc, admission);
    const changes = this.integrate(update, new RemoteOrigin(source));
    if (changes instanceof Error) throw new ProtocolError('invalid-update', `update could not be applied: ${changes.message}`, { cause: changes });
    // Claims first: the store commits them no later than the append below (see DocOwnership).
    const claimed = this.ownership.claimApplied(this.doc, admission, source, statesBefore);
    const complete = integrated(this.doc, admission.needs);
    // The other relays' clients get it now (a preview), unless whose it is may still change: an
    // update that claims ids (the claim can lose its race in the store; the relay then reloads
    // and the content is gone; later updates under those ids build on it, so they cannot show
    // without it), or one that completed waiting content (whose ids are not the update's).
    if (previewed && this.deps.clusterPreviews && this.follower && !hadPending && claimed === null) for (const c of changes) this.follower.preview(c);
    let appended: Promise<void>;
    if (complete) {
      // All of it integrated: stored as received, a duplicate too (its content may be in memory
      // only, from an append that failed: an ack must never rest on that). Pending content it
      // completed is stored with it.
      appended = this.appends.append(!hadPending || changes.length === 0 ? update : Y.mergeUpdates([update, ...changes]));
    } else if (changes.length > 0) {
      // Part of it waits, or it completed content that waited: store what integrated.
      appended = this.appends.append(changes.length === 1 ? changes[0]! : Y.mergeUpdates(changes));
    } else {
      // Nothing integrated: what it carries was stored already, or waits.
      appended = this.appends.last;
    }
    // A claim another relay sharing the store made first (NotOwnerError): this document then
    // holds content under someone else's ids, and so may the log, after theirs; the reload takes
    // the log's order, in which the first stored wins (the sender is refused, never acknowledged).
    claimed?.catch((err: unknown) => {
      if (err instanceof NotOwnerError) void this.recover(err);
    });
    const committed = claimed ? Promise.all([claimed, appended]).then(() => {}) : appended;
    // Registered before `settle`, which drops pending content nobody waits for.
    const own = complete ? committed : this.pending.wait(admission.needs, admission.sent);
    this.pending.settle(committed);
    // Callers chain acks behind earlier updates, so a refusal may find no handler of its own
    // (its sender was already closed): it must not count as an unhandled rejection.
    own.catch(() => {});
    return own;
  }

  /**
   * Claims a peer relay sent on its link (`from`), before the content written under those ids:
   * recorded before that content is applied, committed before it is acknowledged, passed on to
   * the other peer relays (see DocOwnership).
   */
  learnClaims(claims: ClientClaims[], from: DocPeer): void {
    const evicted = this.ownership.learn(claims, from, this.pending);
    if (evicted === null) return;
    this.repend(evicted);
    this.broadcast.schedule();
  }

  /** Client id claims another relay of the cluster committed (ClusterFollower); see DocOwnership.learnCommitted. */
  learnCommittedClaims(claims: ClientClaims[]): void {
    if (!this.destroyed) this.repend(this.ownership.learnCommitted(claims, this.pending));
  }

  /** Applies again the updates still waiting after an eviction (their content waits again). */
  private repend(updates: Uint8Array[]): void {
    for (const u of updates) {
      try {
        // Not a RemoteOrigin: should any of it integrate now, it is stored as a relay-side change.
        Y.applyUpdate(this.doc, u, REPEND_ORIGIN);
      } catch (err) {
        void this.recover(err);
        return;
      }
    }
  }

  /** Claims to send to a peer relay before a sync step 2 (see DocOwnership.forSync). */
  claimsForSync(): ClientClaims[][] {
    return this.ownership.forSync();
  }

  /**
   * The document's integrated state as an update (for sync step 2 and HTTP), optionally only
   * what a peer with `stateVector` lacks. Pending structs are never served: they may be
   * forged, and peers get them through the update event once they integrate.
   */
  encodeState(stateVector?: Uint8Array): Uint8Array {
    return this.wholeState.encode(this.doc, stateVector);
  }

  /** The same as updates to apply in order (see WholeState.updates): what a sync step 2 sends. */
  stateUpdates(stateVector: Uint8Array): readonly Uint8Array[] {
    return this.wholeState.updates(this.doc, stateVector);
  }

  /** Resolves when every update handed to storage so far has been committed (or failed). */
  whenWritesSettled(): Promise<void> {
    return this.appends.settled();
  }

  /**
   * Resolves when no update is being written to storage (every one handed over, also while this
   * waits, has been committed or failed), and a compaction in progress has finished.
   */
  async whenPersisted(): Promise<void> {
    await this.appends.drained();
    await this.compaction.idle();
  }

  /**
   * Gives up the appends waiting for storage to be reachable (the relay is closing): they were
   * never acknowledged, so their senders still have them. `whenPersisted` then settles.
   */
  stopStorageRetries(): void {
    this.retries.stop();
  }

  private setIncarnation(incarnation: number): void {
    this.incarnation = incarnation;
    this.appends.incarnation = incarnation;
    this.compaction.incarnation = incarnation;
  }

  /**
   * The document was deleted by someone else than this relay's DocRegistry.delete: another
   * relay of the cluster (ClusterFollower), or a store that refused this copy's append or a
   * reload that found a newer incarnation. Asks the registry to drop it (RelayDocDeps.deleted),
   * which calls `closeDeleted`.
   */
  deletedElsewhere(incarnation?: number): void {
    if (this.deleted || this.destroyed) return;
    this.deps.logger.info({ doc: this.name, incarnation }, 'the document was deleted elsewhere; dropping it');
    if (this.deps.deleted) this.deps.deleted(this, incarnation);
    else this.closeDeleted(incarnation);
  }

  /**
   * Closes every session of the document with 'document-deleted' (4410; a peer relay's link
   * too) and releases it. Idempotent. What its clients sent and storage did not commit before
   * the delete is gone with it: the store refuses appends of the old incarnation.
   */
  closeDeleted(incarnation = this.incarnation + 1): void {
    if (this.deleted) return;
    this.deleted = true;
    // The new incarnation (at least this copy's + 1): a client erases a replica of an older one.
    const err = new DocumentDeletedError(`${deletedAt(incarnation)}document "${this.name}" was deleted`);
    for (const peer of Array.from(this.peers)) peer.closeDeleted?.(err);
    if (!this.destroyed) this.destroy();
  }

  /** Flushes queued broadcasts and releases the document's resources. */
  destroy(): void {
    this.retries.stop();
    this.follower?.stop();
    this.destroyed = true;
    this.wakeInputWaiters();
    this.pending.failAll(new CapsyncError('missing-dependencies', 'the document was unloaded before the update could integrate'));
    this.broadcast.flush();
    this.awareness.destroy();
    this.detach(this.doc);
    for (const h of this.hooks) h.stop();
    this.doc.destroy();
  }

  // ---- recovery ----

  /**
   * An update decoded but failed half-way into the document, which may now hold part of it,
   * or an append failed, so the document holds content storage does not. Pause input, let
   * earlier updates commit, reload the document from storage, bring peers level with the
   * reloaded document, and resume. Connections keep their place; none of them was sent the bad
   * update (content whose append failed may have gone out: its sender resends it, and other
   * replicas offer it again on their next sync).
   */
  private async recover(cause: unknown): Promise<void> {
    if (cause instanceof CapsyncError && cause.code === 'document-deleted') return this.deletedElsewhere();
    if (this.paused || this.deleted) return;
    this.paused = true;
    this.deps.logger.warn({ err: cause, doc: this.name }, 'an update failed to integrate or to be stored; reloading document from storage');
    try {
      this.broadcast.flush();
      await this.whenPersisted();
      // Every append of a change applied through here has settled (committed or failed).
      const settledThrough = this.replication.applied;
      const { doc: fresh, head, incarnation } = await loadDoc(this.name, this.deps);
      if (incarnation !== this.incarnation) {
        fresh.destroy();
        this.deletedElsewhere(incarnation);
        return;
      }
      // Replaying the log can integrate structs the live document held back (forged input
      // makes integration order-dependent): send peers what they now lack. Peers are not asked
      // to send back what the reload lost: content the relay cannot integrate would then close
      // healthy connections; they offer it again on their next sync.
      const catchUp = encodeIntegratedState(fresh, Y.encodeStateVector(this.doc));
      // Whether storage holds all the live document held: not when a failed append's content
      // is stored nowhere. Structs and deletions (Yjs's snapshot check).
      const holdsAll = Y.snapshotContainsUpdate(Y.snapshot(fresh), encodeIntegratedState(this.doc, Y.encodeStateVector(fresh)));
      this.detach(this.doc);
      this.doc.destroy();
      this.doc = fresh;
      this.attach(fresh);
      this.follower?.reset(head);
      // Storage holds everything applied through `settledThrough` after all (a failed append
      // had committed: its answer was lost, or its statement timed out behind a commit that
      // completed later): durable. Unmarked, a quorum barrier waits for it forever, as its
      // sender resyncs and sends nothing again. When something is lost it stays unmarked: a
      // quorum must never be answered for content stored nowhere (the resend marks it).
      if (holdsAll) this.replication.recordLocalDurable(settledThrough);
      this.deps.logger.warn({ doc: this.name, storedAll: holdsAll, settledThrough, applied: this.replication.applied }, 'document reloaded from storage');
      // Pending content lived in the old document only.
      this.pending.failAll(new CapsyncError('missing-dependencies', 'the document was reloaded before the update could integrate; send it again'));
      for (const peer of this.peers) {
        if (!isEmptyUpdate(catchUp)) peer.sendUpdate(catchUp);
      }
    } catch (err) {
      this.deps.logger.error({ err, doc: this.name }, 'recovery reload failed; keeping the in-memory document');
    } finally {
      this.paused = false;
      this.resumeInput();
    }
  }

  // ---- fan-out ----

  private attach(doc: Y.Doc): void {
    doc.on('update', this.onLocalUpdate);
    this.wholeState.watch(doc);
    for (const h of this.hooks) h.watch(doc);
  }

  private detach(doc: Y.Doc): void {
    doc.off('update', this.onLocalUpdate);
    this.wholeState.unwatch(doc);
    for (const h of this.hooks) h.unwatch(doc);
  }

  /**
   * Every change that integrated into the document is forwarded from here: Yjs encodes it
   * from integrated structs, so a forged or not-yet-integrable part of a remote update never
   * reaches other peers nor storage. Remote changes are stored by `applyRemote` (after the
   * apply succeeded); changes made on the relay itself are stored here.
   */
  private readonly onLocalUpdate = (update: Uint8Array, origin: unknown): void => {
    const source = origin instanceof RemoteOrigin && isDocPeer(origin.source) ? origin.source : null;
    this.replication.recordApplied(update.byteLength, source?.peerRelayId ?? null);
    if (origin instanceof RemoteOrigin) {
      this.applying?.push(update); // stored by applyRemote once the apply succeeded
      this.broadcast.queue(update, source);
      return;
    }
    this.broadcast.queue(update, null);
    const persisted = this.appends.append(update);
    persisted.catch((err: unknown) => this.deps.logger.error({ err, doc: this.name }, 'persisting a relay-side change failed'));
    this.lastLocalPersist = persisted;
  };
}

/** Origin of another cluster relay's committed changes (see `applyCommitted`). */
const CLUSTER_ORIGIN = new RemoteOrigin({ kind: 'cluster' });

/** Origin of pending content applied again after an eviction (see `repend`). */
const REPEND_ORIGIN = Symbol('capsync:repend');

/** Connections are peers of the document; HTTP requests are sources only. */
function isDocPeer(source: UpdateSource): source is DocPeer {
  return source.kind === 'connection';
}
