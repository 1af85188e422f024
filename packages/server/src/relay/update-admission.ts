import * as Y from 'yjs';
import * as decoding from 'lib0/decoding';
import { LimitExceededError, NotOwnerError, assertOutsideFencedArea, validateUpdateFor } from '@capsync/core';
import type { ResolvedRelayOptions } from '../config.js';
import type { RelayMetrics } from '../metrics.js';
import type { ClientOwners } from './client-owners.js';
import { differingKnownStruct } from './known-structs.js';
import type { UpdateSource } from './origins.js';
import type { PendingUpdates, Sent } from './pending-updates.js';

/**
 * The per-update bounds of a relay: the `--max-new-clients-per-update` and `--max-pending-*`
 * family of flags, as resolved (their meaning is documented on RelayOptions). Peer relays are
 * exempt from the client id caps (see UpdateWriter.trusted).
 */
export type UpdateLimits = Pick<
  ResolvedRelayOptions,
  'maxNewClientsPerUpdate' | 'maxClientsPerDoc' | 'maxClientsPerIdentity' | 'pendingTimeoutMs' | 'maxPendingBytesPerDoc' | 'maxPendingUpdatesPerConnection' | 'maxPendingUpdatesPerDoc'
>;

/** Who sends an update, as far as the admission checks care. */
export interface UpdateWriter {
  /**
   * A peer relay (relay credential) or the lock authority relay: it replicates everyone's
   * history, admitted under the limits and ownership of the relay that received it first, so
   * it is exempt from the client id caps and from ownership. Refusing it would leave the mesh
   * diverged for good.
   */
  trusted: boolean;
  /**
   * The identity writing (a token's `sub`), on a relay that enforces client id ownership (one
   * with auth). `null`: no ownership (an open relay has no identities). `undefined`: a token
   * without `sub`, which may write under no owned client id and claims none.
   */
  identity: string | null | undefined;
  /**
   * The client ids the writer declared it writes under (WRITES_PREFIX), or undefined when it
   * declared none: then every new id it writes under is claimed for it.
   */
  declared?: ReadonlySet<number> | undefined;
}

/** What the relay learned about an update it admitted (see `admitUpdate`). */
export interface Admission {
  /** Client ids the update carries structs of: the entries its ack's state vector holds. */
  clients: number[];
  /**
   * Per client id, the clock the document's state must reach for the update to be integrated
   * (the end of its structs and of its deletions). Checked after the apply, without scanning
   * the document: when a clock is not reached, Yjs holds the update back as pending.
   */
  needs: Map<number, number>;
  /** Client ids nobody owns yet that the update writes and its writer declared (or it declared none), claimed for `owner`. */
  claims: { owner: string; clientIds: number[] } | null;
  /**
   * Client ids new to the document that the update writes and its writer (`owner`) did not
   * declare: someone else's edits it carries. Not claimed, but counted against its budget
   * once integrated (ClientOwners.carry).
   */
  carried: { owner: string; clientIds: number[] } | null;
  /** Client ids the document did not hold that the update writes (counted per connection where there is no identity). */
  fresh: number;
  /**
   * Every client id nobody owned that the update inserts content under, declared or not,
   * claimed or not (a writer without `sub` claims none): if the content waits for
   * dependencies, whoever claims one of them first evicts it (see PendingUpdates.evict), and
   * it is checked again when it integrates (DocOwnership.claimLate). Empty where ownership
   * does not apply.
   */
  unowned: number[];
  /** Who sent it and what, for PendingUpdates.wait should part of it wait (set by checkRemoteUpdate). */
  sent?: Sent;
}

/**
 * Refuses, before the update is decoded (which costs about 40 µs per struct), an update that
 * lists more client ids than the document's known ones plus the per-update cap: at least that
 * many of them must be new. The first number of a Yjs (v1) update is its client count. A
 * malformed update is left to the full decode to refuse. Throws LimitExceededError.
 */
export function precheckClientCount(doc: Y.Doc, update: Uint8Array, writer: UpdateWriter, limits: UpdateLimits): void {
  if (writer.trusted) return;
  let listed: number;
  try {
    listed = decoding.readVarUint(decoding.createDecoder(update));
  } catch {
    return;
  }
  const atLeastNew = listed - doc.store.clients.size;
  if (atLeastNew > limits.maxNewClientsPerUpdate) {
    throw new LimitExceededError('max-new-clients-per-update', `update introduces at least ${atLeastNew} client ids, over the limit of ${limits.maxNewClientsPerUpdate}`);
  }
}

/**
 * The relay's checks of one decoded, forgery-checked update that depend on who sends it:
 * how many client ids it introduces, to the update and to the document, and whether the
 * writer owns the client ids it inserts content under. Costs what the update holds (a map
 * lookup per struct), never what the document holds. Changes nothing; the caller records
 * `claims` (see `ClientOwners.claim`) once it applies the update.
 *
 * Ownership is about inserted content only: structs at clocks the document already has (a
 * client re-sending what it got from the relay) need no ownership, only to be what the document
 * holds there (`differingKnownStruct`), and a deletion may delete anyone's items (that is
 * collaboration).
 *
 * Each identity may own at most `--max-clients-per-identity` client ids of the document,
 * the ids new to the document it carried without declaring them included (counted from the
 * claims and carried records, durable: ClientOwners.budgetOf); a writer without identity
 * (open relay, token without `sub`) may introduce that many per connection (`source`; for
 * HTTP, per client address, see HttpSources).
 *
 * Throws `LimitExceededError` ('max-new-clients-per-update', 'max-clients-per-doc',
 * 'max-clients-per-identity') or `NotOwnerError`.
 */
export function admitUpdate(
  doc: Y.Doc,
  decoded: ReturnType<typeof Y.decodeUpdate>,
  writer: UpdateWriter,
  limits: UpdateLimits,
  owners: ClientOwners,
  source?: UpdateSource,
): Admission {
  const store = doc.store;
  const needs = new Map<number, number>();
  for (const s of decoded.structs) {
    if (s instanceof Y.Skip) continue;
    const end = s.id.clock + s.length;
    if (end > (needs.get(s.id.client) ?? 0)) needs.set(s.id.client, end);
  }
  const clients = Array.from(needs.keys());
  let fresh = 0;
  if (!writer.trusted) {
    for (const client of clients) if (!store.clients.has(client)) fresh++;
    if (fresh > limits.maxNewClientsPerUpdate) {
      throw new LimitExceededError('max-new-clients-per-update', `update introduces ${fresh} client ids, over the limit of ${limits.maxNewClientsPerUpdate}`);
    }
    if (fresh > 0 && store.clients.size + fresh > limits.maxClientsPerDoc) {
      throw new LimitExceededError('max-clients-per-doc', `document would hold ${store.clients.size + fresh} client ids, over the limit of ${limits.maxClientsPerDoc}`);
    }
    // Without an identity (open relay, token without `sub`), the connection is who introduces
    // ids; anyone can open another, so this only slows a client down (see the README).
    if (fresh > 0 && typeof writer.identity !== 'string' && source !== undefined && owners.introducedBy(source) + fresh > limits.maxClientsPerIdentity) {
      throw new LimitExceededError('max-clients-per-identity', `this connection (over HTTP: this client address) would have introduced ${owners.introducedBy(source) + fresh} client ids to this document, over the limit of ${limits.maxClientsPerIdentity}`);
    }
  }
  let claims: Admission['claims'] = null;
  let carried: Admission['carried'] = null;
  const unowned: number[] = [];
  if (!writer.trusted && writer.identity !== null) {
    const othersKnown = new Set<number>();
    for (const [client, end] of needs) {
      const owner = owners.get(client);
      // Its structs at clocks the relay holds must be what it holds (see differingKnownStruct),
      // also under ids nobody owns (content of peers, of tokens without sub): a different
      // struct at a known id and clock would be acked and lost all the same. A writer without
      // an identity (token without sub) owns nothing, so every id is compared for it (its own
      // stale resend of content deleted since is refused: read and write again).
      if (owner !== writer.identity || writer.identity === undefined) othersKnown.add(client);
      if (end <= Y.getState(store, client)) continue; // nothing new under this id
      // Held for a connected client that declared it (ClientOwners.announce): not a writer's to take.
      const announcedBy: string | undefined = owner === undefined ? owners.announcedBy(client) : undefined;
      if (announcedBy !== undefined && announcedBy !== writer.identity) {
        throw new NotOwnerError(`client id ${client} is in use by another identity; write under your own client id`);
      }
      if (owner === undefined) unowned.push(client);
      else if (owner !== writer.identity) {
        // The owner's name is nobody else's business: say only that it is not the writer.
        throw new NotOwnerError(`client id ${client} belongs to another identity; write under your own client id`);
      }
    }
    const differing = othersKnown.size > 0 ? differingKnownStruct(store, decoded, othersKnown) : null;
    if (differing !== null) {
      throw new NotOwnerError(`the relay holds other content at ${differing.client}:${differing.clock} under a client id that is not yours; write under your own client id`);
    }
    if (unowned.length > 0 && writer.identity !== undefined) {
      // Content under an id the writer did not declare is someone else's it carries: not
      // claimed (its author may), but an id new to the document still counts against the
      // writer's budget, or declaring one id would let it fill --max-clients-per-doc alone.
      const declared = writer.declared;
      const mine = declared === undefined ? unowned : unowned.filter((id) => declared.has(id));
      const carries = declared === undefined ? [] : unowned.filter((id) => !declared.has(id) && !store.clients.has(id));
      // Counted from the claims and carried records (durable, so restarts do not reset it);
      // everyone else can still write once this identity is out of budget.
      const spent = owners.budgetOf(writer.identity) + mine.length + carries.length;
      if (spent > limits.maxClientsPerIdentity) {
        throw new LimitExceededError('max-clients-per-identity', `you would own or have introduced ${spent} client ids of this document, over the limit of ${limits.maxClientsPerIdentity}`);
      }
      if (mine.length > 0) claims = { owner: writer.identity, clientIds: mine };
      if (carries.length > 0) carried = { owner: writer.identity, clientIds: carries };
    }
  }
  for (const [client, ranges] of decoded.ds.clients) {
    for (const r of ranges) {
      const end = r.clock + r.len;
      if (end > (needs.get(client) ?? 0)) needs.set(client, end);
    }
  }
  return { clients, needs, claims, carried, fresh, unowned };
}

/**
 * Every check of a remote update before it is applied (RelayDoc.receive): the cheap client
 * count precheck, the full decode with the forgery checks of `validateUpdateFor`, the fenced
 * area (untrusted writers only), `admitUpdate`, then the caps on content waiting for missing
 * dependencies (`PendingUpdates.admit`, with `source` the sender), all before Yjs sees the
 * update. Counts limit refusals by limit.
 */
export function checkRemoteUpdate(
  doc: Y.Doc,
  update: Uint8Array,
  writer: UpdateWriter,
  ctx: {
    limits: UpdateLimits;
    owners: ClientOwners;
    metrics: Pick<RelayMetrics, 'limitRefusals'>;
    pending?: PendingUpdates | undefined;
    source?: UpdateSource | undefined;
  },
): Admission {
  try {
    precheckClientCount(doc, update, writer, ctx.limits);
    let decoded: ReturnType<typeof Y.decodeUpdate>;
    try {
      decoded = validateUpdateFor(doc, update);
    } catch (err) {
      assertNoForeignClients(update, writer, ctx.owners);
      throw err;
    }
    if (!writer.trusted) assertOutsideFencedArea(doc, decoded);
    const admission = admitUpdate(doc, decoded, writer, ctx.limits, ctx.owners, ctx.source);
    admission.sent = { source: ctx.source, update, writer, unowned: admission.unowned, carried: admission.carried?.clientIds ?? [] };
    ctx.pending?.admit(admission.sent, wouldWait(doc, decoded));
    return admission;
  } catch (err) {
    if (err instanceof LimitExceededError) ctx.metrics.limitRefusals.inc({ limit: err.limit });
    throw err;
  }
}

/**
 * On an update the forgery checks refused: throws NotOwnerError instead when it writes under a
 * client id another identity owns. Content under a squatted id is expected to fail them (it
 * refers to the owner's items, which stand where this writer's were), and the writer's client
 * must learn that the id is not its own, not retry a "corrupt" update forever. Only runs on the
 * refusal path; an update that does not decode keeps its original error.
 */
function assertNoForeignClients(update: Uint8Array, writer: UpdateWriter, owners: ClientOwners): void {
  if (writer.trusted || typeof writer.identity !== 'string') return;
  let structs: ReturnType<typeof Y.decodeUpdate>['structs'];
  try {
    structs = Y.decodeUpdate(update).structs;
  } catch {
    return;
  }
  for (const s of structs) {
    const owner = owners.get(s.id.client);
    if (owner !== undefined && owner !== writer.identity) {
      throw new NotOwnerError(`client id ${s.id.client} belongs to another identity; write under your own client id`);
    }
  }
}

/** What part of an update Yjs would hold back as pending (see `wouldWait`). */
export interface WaitPrediction {
  /** Some of it would wait for missing dependencies. */
  waits: boolean;
  /** Its deletion ranges that would wait (each is re-read on every later apply). */
  deletionRanges: number;
}

/**
 * What Yjs would hold (part of) the decoded update back as pending for: a struct starts past
 * what the document and the update's earlier structs reach for its client id, it refers (left
 * or right origin, parent item) to another client id's clock that neither reaches, or a
 * deletion ends past it. Mirrors Yjs's own dependency check (`Item.getMissing`, which skips
 * references within one client id, and `readAndApplyDeleteSet`). Costs a map lookup per
 * struct, reference and deletion range, never what the document holds. `PendingUpdates.wait`
 * catches a case this misses after the fact.
 */
export function wouldWait(doc: Y.Doc, decoded: ReturnType<typeof Y.decodeUpdate>): WaitPrediction {
  const store = doc.store;
  // Per client id, the clock the document plus the update's contiguous structs reach.
  const reach = new Map<number, number>();
  const reached = (client: number): number => reach.get(client) ?? Y.getState(store, client);
  let waits = false;
  for (const s of decoded.structs) {
    if (s instanceof Y.Skip) continue;
    const start = reached(s.id.client);
    if (s.id.clock > start) waits = true; // a gap: the clocks before it are missing
    else reach.set(s.id.client, Math.max(start, s.id.clock + s.length));
  }
  const missing = (ref: unknown, own: number): boolean =>
    isId(ref) && ref.client !== own && ref.clock >= reached(ref.client);
  for (const s of decoded.structs) {
    if (waits) break;
    if (!(s instanceof Y.Item)) continue;
    if (missing(s.origin, s.id.client) || missing(s.rightOrigin, s.id.client) || missing(s.parent, s.id.client)) waits = true;
  }
  let deletionRanges = 0;
  for (const [client, ranges] of decoded.ds.clients) {
    for (const r of ranges) if (r.clock + r.len > reached(client)) deletionRanges++;
  }
  return { waits: waits || deletionRanges > 0, deletionRanges };
}

/** A Yjs ID (a decoded item's parent is an ID, a root type or null). */
function isId(x: unknown): x is Y.ID {
  return x instanceof Y.ID;
}

/** True when `doc` has integrated everything an update needed (see `Admission.needs`). */
export function integrated(doc: Y.Doc, needs: Map<number, number>): boolean {
  for (const [client, clock] of needs) if (Y.getState(doc.store, client) < clock) return false;
  return true;
}
