import * as Y from 'yjs';
import * as random from 'lib0/random';
import type * as awarenessProtocol from 'y-protocols/awareness';
import { NotOwnerError } from '@capsync/core';
import { deletionUpdate, remakeUnder, withoutClients } from './update-rewrite.js';

/** What a re-key did: the content this replica held under `from` now lives under `to`. */
export interface RekeyInfo {
  /** The client id the relay refused (another identity owns it there). */
  from: number;
  /** The fresh client id that content, and this document's new edits when `from` was its own, are under now. */
  to: number;
}

/**
 * Re-keys after more than this many refusals with no ack in between: whatever this replica
 * sends is refused, re-keying does not help (the relay names one refused id per refusal, so a
 * replica holding several foreign ids needs a round per id).
 */
const MAX_REKEYS_WITHOUT_ACK = 8;

/**
 * A relay with auth refuses content under a Yjs client id another identity owns (4403
 * `not-owner`): someone wrote under this replica's id first (it learned the id from our
 * awareness), or the replica was restored from another user's storage. The replica cannot drop
 * structs it holds, and the relay will never take them, so this replica:
 *
 * 1. re-makes everything it holds under the refused id (content, tombstones, deletions) under a
 *    fresh id and deletes the originals, in one local transaction (`origin`): the copies
 *    integrate where the originals were, so the text reads the same, and this is a local edit
 *    like any other (stored, queued as pending, shared with other tabs, sent to the relay);
 * 2. continues under the fresh id (`doc.clientID`, and the awareness id) if the refused id was
 *    its own;
 * 3. never sends structs under the refused id again (`outgoing` strips them), nor references
 *    to them (new edits next to the deleted originals get the nearest other neighbours as
 *    origins, which is the same visible position), and sends its deletions of them only below
 *    what the relay holds of that id, where they delete the other identity's items that stood
 *    where ours were (past it they would wait for structs the relay never gets).
 *
 * Known limit: such an edit keeps its original origins in this replica and the replaced ones
 * elsewhere; both read the same text, but a later concurrent insert at exactly that spot may be
 * ordered differently here than elsewhere.
 *
 * Bounded: a refused id that is one this replica already re-keyed or created, or more than
 * MAX_REKEYS_WITHOUT_ACK re-keys without an ack, is a NotOwnerError the caller reports and
 * stops on. The refused ids are remembered for the life of the handle, not stored: after a
 * reload the first connection is refused once more and re-keys again (the second copy is
 * tombstones only, since the originals are deleted).
 */
export class ClientRekey {
  /** Refused client id → clock below which the relay holds structs of it (from its sync step 1). */
  private readonly refused = new Map<number, number>();
  /** Refused client id → the fresh one its content was re-made under. */
  private readonly copies = new Map<number, number>();
  private readonly created = new Set<number>();
  private withoutAck = 0;
  /** The relay's latest state vector (its sync step 1), decoded only once something was refused. */
  private relayStateVector: Uint8Array | null = null;

  constructor(
    private readonly doc: Y.Doc,
    private readonly awareness: awarenessProtocol.Awareness,
    private readonly origin: symbol,
  ) {}

  /** The relay's sync step 1 on a new connection: what it holds. */
  relayHolds(stateVector: Uint8Array): void {
    this.relayStateVector = stateVector;
    if (this.refused.size > 0) this.updateRelayClocks();
  }

  /** The relay acknowledged something: the last re-key helped. */
  acked(): void {
    this.withoutAck = 0;
  }

  /**
   * `update` as the relay may get it: without the refused client ids' structs and references to
   * them (see `withoutClients`); the very same bytes when nothing was refused.
   */
  outgoing(update: Uint8Array): Uint8Array {
    return this.refused.size === 0 ? update : withoutClients(this.doc, update, { held: this.refused, copies: this.copies });
  }

  /**
   * The relay refused a client id (close reason of a 4403 `not-owner`): re-keys and returns what
   * it did, or returns the NotOwnerError to report when re-keying did not or cannot help.
   */
  onRefused(reason: string): RekeyInfo | NotOwnerError {
    const from = refusedClientId(reason);
    if (from === undefined) return new NotOwnerError(`the relay refused a client id without naming it (${reason})`);
    if (this.refused.has(from) || this.created.has(from) || this.withoutAck >= MAX_REKEYS_WITHOUT_ACK) {
      return new NotOwnerError(`the relay refused client id ${from} again after re-keying: ${reason}`);
    }
    if (Y.getState(this.doc.store, from) === 0) return new NotOwnerError(`the relay refused client id ${from}, which this replica holds nothing under: ${reason}`);
    const to = this.freshClientId();
    const copy = remakeUnder(this.doc, from, to);
    const end = Y.getState(this.doc.store, from);
    this.doc.transact(() => {
      Y.applyUpdate(this.doc, copy);
      Y.applyUpdate(this.doc, deletionUpdate(from, 0, end));
    }, this.origin);
    if (this.doc.clientID === from) this.doc.clientID = to;
    this.moveAwareness(from, to);
    this.refused.set(from, 0);
    this.copies.set(from, to);
    this.created.add(to);
    this.withoutAck++;
    this.updateRelayClocks();
    return { from, to };
  }

  private updateRelayClocks(): void {
    if (!this.relayStateVector) return;
    const held = Y.decodeStateVector(this.relayStateVector);
    for (const id of this.refused.keys()) this.refused.set(id, held.get(id) ?? 0);
  }

  /** A random 32-bit id (what Yjs draws) nothing in this document is written under. */
  private freshClientId(): number {
    let id: number;
    do id = random.uint32();
    while (this.doc.store.clients.has(id) || this.refused.has(id));
    return id;
  }

  /** Our presence moves to the new id too: the relay gives an awareness id to the first connection that sets it. */
  private moveAwareness(from: number, to: number): void {
    const aw = this.awareness;
    if (aw.clientID !== from) return;
    const state = aw.getLocalState();
    if (state !== null) aw.setLocalState(null);
    aw.clientID = to;
    if (state !== null) aw.setLocalState(state);
  }
}

/** The client id a relay's `not-owner` close reason names ("... client id 123 belongs to ..."). */
export function refusedClientId(reason: string): number | undefined {
  const m = /client id (\d+)/.exec(reason);
  return m ? Number(m[1]) : undefined;
}
