import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { LimitExceededError, decodeAwarenessUpdate, type AwarenessEntry } from '@capsync/core';
import type { RelayMetrics } from '../metrics.js';
import { RELAY_AWARENESS_ORIGIN } from './origins.js';
import { AwarenessReservations, type ReservationHolder } from './awareness-reservations.js';
import type { AwarenessHook } from '../hooks/awareness-hook.js';

/** The bounds on a document's awareness (flags `--max-awareness-*`). */
export interface AwarenessLimits {
  /** Largest state of one client id, in bytes of its JSON. */
  maxStateBytes: number;
  /** Client ids one connection may set. Not applied to peer relays (see `apply`). */
  maxStatesPerConnection: number;
  /** States the document holds over all its connections. */
  maxStatesPerDoc: number;
  /** Reservations one client address may hold for identities without a token `sub` (see AwarenessReservations). */
  maxReservationsPerAddress: number;
}

/** Who sets awareness states and receives changes: a connection, or a peer relay's link. */
export interface AwarenessSource {
  sendAwareness(update: Uint8Array): void;
}

/**
 * A document's awareness (presence), bounded and owned.
 *
 * Ownership: the first source to set a client id owns it until it removes it, it times out
 * (y-protocols drops states not renewed for 30 s) or the source goes away. Other sources'
 * states and removals for an owned id are ignored, so nobody can impersonate or hide another
 * client's presence. A freed id stays reserved for its owner's identity for 30 s (see
 * AwarenessReservations, at most `maxStatesPerDoc` of them), so that a user who reconnects gets
 * her id back and nobody can take it in between.
 *
 * Bounds, and what happens past them:
 * - a state over `maxStateBytes`, or a connection setting more than `maxStatesPerConnection`
 *   ids: the connection overflows its own bounds and is closed (LimitExceededError, 4413);
 * - a document at `maxStatesPerDoc`: new ids are not applied nor broadcast, the connection is
 *   kept (a full document is not the newcomer's fault).
 * Peer relays relay the presence of many clients, each of which their own relay bounded: they
 * are exempt from the per-connection bound (the per-document bound still holds), and an
 * oversized state from them is dropped rather than closing the link between relays.
 * Every refusal counts in `capsync_limit_refusals_total{limit}`.
 *
 * The backend's onAwareness (`hook`) judges each state a client sets, after the checks above
 * (a client over its bounds is closed before the hook sees anything) and before it is applied:
 * a dropped state is neither applied nor broadcast, a rewritten one is applied and broadcast in
 * its place (see RelayHooks.onAwareness).
 *
 * So a newcomer or a query-awareness gets at most `maxStatesPerDoc` states of at most
 * `maxStateBytes` each.
 */
export class DocAwareness {
  readonly awareness: awarenessProtocol.Awareness;
  private readonly owners = new Map<number, AwarenessSource>();
  private readonly owned = new Map<AwarenessSource, Set<number>>();
  /** The lasting identity (and client address) of each source that owns ids and has one (see `apply`). */
  private readonly identities = new Map<AwarenessSource, ReservationHolder>();
  private readonly reservations: AwarenessReservations;
  /** Sources that receive broadcasts of changes. */
  private readonly listeners: Iterable<AwarenessSource>;

  constructor(
    doc: Y.Doc,
    listeners: Iterable<AwarenessSource>,
    private readonly limits: AwarenessLimits,
    private readonly metrics: RelayMetrics,
    private readonly hook?: AwarenessHook,
  ) {
    this.listeners = listeners;
    this.reservations = new AwarenessReservations(
      { perDoc: limits.maxStatesPerDoc, perIdentity: limits.maxStatesPerConnection, perAddress: limits.maxReservationsPerAddress },
      () => this.refused('max-awareness-reservations-per-address'),
    );
    this.awareness = new awarenessProtocol.Awareness(doc);
    this.awareness.setLocalState(null);
    this.awareness.on('update', this.onUpdate);
  }

  /**
   * Applies an awareness update from `source`, keeping what it may set (see the class).
   * `relay`: the source is a link to a peer relay (relay credential), relaying many clients.
   * `identity`: the source's lasting identity (token `sub` or owner key; undefined for none and
   * for peer relays): the ids it frees are reserved for it, and it may take back its own.
   * `address`: the client's address, which reservations of identities other than a token's
   * `sub` count against (see AwarenessReservations). `subject`: the token's `sub`, which the
   * onAwareness hook is told (a client's states only: a peer relay's were judged by its relay).
   * Throws ProtocolError('invalid-awareness') if it does not decode, LimitExceededError if
   * the source overflows its own bounds; nothing of the update is applied then.
   */
  apply(
    update: Uint8Array,
    source: AwarenessSource,
    { relay: peer, identity, address, subject }: { relay: boolean; identity?: string | undefined; address?: string | undefined; subject?: string | undefined },
  ): void {
    if (!peer) this.refuseOversizedBatch(update);
    // A peer relay's link relays many clients: it reserves nothing for itself.
    else identity = undefined;
    const entries = decodeAwarenessUpdate(update);
    const mine = this.owned.get(source);
    let newIds = 0;
    let total = this.awareness.getStates().size;
    const accepted: AwarenessEntry[] = [];
    let rewritten = false;
    for (let e of entries) {
      const owner = this.owners.get(e.clientID);
      if (owner !== undefined && owner !== source) continue; // someone else's: ignored
      if (owner === undefined) {
        // Peer relays too: a reservation would be bypassed by setting the id through another
        // relay of the mesh. The owner coming back through another relay is then not shown
        // here until the reservation ends (at most 30 s): a hijack is worse than that.
        const reservedFor = this.reservations.holder(e.clientID);
        if (reservedFor !== undefined && reservedFor !== identity) continue; // held for its last owner: ignored
      }
      if (e.state === null) {
        if (owner === source) accepted.push(e);
        continue;
      }
      if (e.stateBytes > this.limits.maxStateBytes) {
        this.refused('max-awareness-state-bytes');
        if (peer) continue;
        throw new LimitExceededError('max-awareness-state-bytes', `--max-awareness-state-bytes: an awareness state of ${e.stateBytes} bytes (max ${this.limits.maxStateBytes})`);
      }
      if (this.hook && !peer) {
        const review = this.hook.review(e, subject);
        if ('drop' in review) continue;
        rewritten ||= review.keep !== e;
        e = review.keep;
      }
      if (owner === undefined) {
        // A new id for this source (re-introducing an id it owns is not new).
        if (!peer && (mine?.size ?? 0) + newIds + 1 > this.limits.maxStatesPerConnection) {
          this.refused('max-awareness-states-per-connection');
          throw new LimitExceededError('max-awareness-states-per-connection', `--max-awareness-states-per-connection: more than ${this.limits.maxStatesPerConnection} awareness client ids on one connection`);
        }
        if (!this.awareness.getStates().has(e.clientID)) {
          if (total >= this.limits.maxStatesPerDoc) {
            this.refused('max-awareness-states-per-doc');
            continue;
          }
          total++;
        }
        newIds++;
      }
      accepted.push(e);
    }
    if (accepted.length === 0) return;
    const toApply = accepted.length === entries.length && !rewritten ? update : encodeEntries(accepted);
    // Claim the ids before applying, so the update event below sees them owned.
    const holder = identity === undefined ? undefined : { identity, address };
    for (const e of accepted) if (e.state !== null) this.claim(e.clientID, source, holder);
    awarenessProtocol.applyAwarenessUpdate(this.awareness, toApply, source);
    // An entry y-protocols ignored (an old clock) may have left a claim with no state behind:
    // it never held the id, so it reserves nothing.
    for (const e of accepted) if (e.state !== null && !this.awareness.getStates().has(e.clientID)) this.release(e.clientID, false);
  }

  /** Removes every state `source` owns (it went away) and tells the others. */
  removeAll(source: AwarenessSource): void {
    const ids = this.owned.get(source);
    if (!ids || ids.size === 0) return;
    awarenessProtocol.removeAwarenessStates(this.awareness, Array.from(ids), RELAY_AWARENESS_ORIGIN);
    // Ids without a state (never applied) are not reported by the update event.
    for (const id of Array.from(ids)) this.release(id, false);
  }

  /** Every state, for a newcomer or a query-awareness (at most `maxStatesPerDoc`). Null when empty. */
  encode(): Uint8Array | null {
    const ids = Array.from(this.awareness.getStates().keys());
    return ids.length > 0 ? awarenessProtocol.encodeAwarenessUpdate(this.awareness, ids) : null;
  }

  destroy(): void {
    this.awareness.off('update', this.onUpdate);
    this.awareness.destroy();
  }

  /**
   * A connection owns at most `maxStatesPerConnection` ids, so an update of its own can carry
   * at most that many states plus as many removals; one with more entries sets ids it may not
   * (clients send only their own id). Refused from its entry count, before decoding (and
   * JSON-parsing) thousands of states.
   */
  private refuseOversizedBatch(update: Uint8Array): void {
    const d = decoding.createDecoder(update);
    let count: number;
    try {
      count = decoding.readVarUint(d);
    } catch {
      return; // decodeAwarenessUpdate names what is wrong with it
    }
    const max = 2 * this.limits.maxStatesPerConnection;
    // An entry takes at least 3 bytes: a count the bytes cannot hold is malformed, not a batch.
    if (count <= max || count * 3 > update.byteLength - d.pos) return;
    this.refused('max-awareness-states-per-connection');
    throw new LimitExceededError('max-awareness-states-per-connection', `--max-awareness-states-per-connection: an awareness update of ${count} client ids (one connection sets at most ${this.limits.maxStatesPerConnection})`);
  }

  private claim(id: number, source: AwarenessSource, holder: ReservationHolder | undefined): void {
    if (this.owners.get(id) === source) return;
    if (this.reservations.holder(id) !== undefined) {
      // Its owner's identity takes it back (`apply` let only that one through). The relay's
      // removal bumped the id's clock past the client's: forget it, so her state is applied.
      this.reservations.release(id);
      if (!this.awareness.getStates().has(id)) this.awareness.meta.delete(id);
    }
    this.owners.set(id, source);
    let ids = this.owned.get(source);
    if (!ids) this.owned.set(source, (ids = new Set()));
    ids.add(id);
    if (holder !== undefined) this.identities.set(source, holder);
  }

  /** `id` is free again; `reserve`: hold it for its owner's identity (it did hold the id). */
  private release(id: number, reserve = true): void {
    const owner = this.owners.get(id);
    if (owner === undefined) return;
    this.owners.delete(id);
    const holder = this.identities.get(owner);
    if (reserve && holder !== undefined) this.reservations.reserve(id, holder);
    const ids = this.owned.get(owner);
    ids?.delete(id);
    if (ids && ids.size === 0) {
      this.owned.delete(owner);
      this.identities.delete(owner);
    }
  }

  private refused(limit: string): void {
    this.metrics.limitRefusals.inc({ limit });
  }

  private readonly onUpdate = ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown): void => {
    // Removed by its owner, by the relay, or timed out: the id is free again. Reserved for its
    // identity only when its connection went away (the relay removed it) or it timed out: a
    // client removing its own state has left, and reserving on that would let one connection
    // churn ids to fill the document's reservations.
    for (const id of removed) this.release(id, origin === RELAY_AWARENESS_ORIGIN || origin === 'timeout');
    const changed = added.concat(updated, removed);
    if (changed.length === 0) return;
    const update = awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed);
    for (const peer of this.listeners) if (peer !== origin) peer.sendAwareness(update);
  };
}

/** Encodes entries as a y-protocols awareness update. */
function encodeEntries(entries: AwarenessEntry[]): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, entries.length);
  for (const entry of entries) {
    encoding.writeVarUint(e, entry.clientID);
    encoding.writeVarUint(e, entry.clock);
    encoding.writeVarString(e, JSON.stringify(entry.state));
  }
  return encoding.toUint8Array(e);
}
