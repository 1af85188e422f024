import type * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { CapsyncError, LimitExceededError } from '@capsync/core';
import { CROSS_TAB_ORIGIN, FROM_RELAY } from './origins.js';

/** Where this tab's presence goes. */
export interface PresenceOutlets {
  /** To the relay; false when offline (the next connection announces it). */
  relay(update: Uint8Array): boolean;
  /** To the other tabs. */
  tabs(update: Uint8Array): void;
  error(err: CapsyncError): void;
}

/**
 * This tab's presence (a y-protocols Awareness) on one document: only its own state is
 * announced (others' time out on their own), on every change and on every new connection;
 * presence from the relay is applied; a state the relay refuses is dropped.
 */
export class DocPresence {
  constructor(
    readonly awareness: awarenessProtocol.Awareness,
    private readonly out: PresenceOutlets,
  ) {
    awareness.on('update', this.onUpdate);
  }

  /**
   * A document's Awareness and its presence, made when first needed (see DocHandle.awareness):
   * this tab's state (`{}` at first) goes to the relay at once (offline: on the next
   * connection) and to the other tabs, which asked for it when this tab opened. A closed
   * document's is cleared and stopped at once.
   */
  static start(doc: Y.Doc, out: PresenceOutlets, closed: boolean): DocPresence {
    const presence = new DocPresence(new awarenessProtocol.Awareness(doc), out);
    if (closed) {
      presence.close();
      return presence;
    }
    presence.announce();
    const own = presence.own();
    if (own) out.tabs(own);
    return presence;
  }

  /** This tab's state, encoded, or null when it has none. */
  own(): Uint8Array | null {
    if (this.awareness.getLocalState() === null) return null;
    return awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.awareness.clientID]);
  }

  /** A connection opened: announce our presence on it. */
  announce(): void {
    const update = this.own();
    if (update) this.out.relay(update);
  }

  /** Presence the relay sent. */
  fromRelay(update: Uint8Array): void {
    try {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, update, FROM_RELAY);
    } catch (err) {
      this.out.error(new CapsyncError('invalid-awareness', 'the relay sent an awareness update that does not decode', { cause: err }));
    }
  }

  /**
   * The relay closed the link over this tab's presence (over `limit`): sending it again would be
   * refused again, reconnect after reconnect. Replace it with an empty state; documents sync
   * on, and what the app sets next goes out as usual. Empty, not null: cursor plugins update
   * their field with setLocalStateField, which does nothing on a null state.
   */
  refused(limit: string, reason: string): void {
    if (this.awareness.getLocalState() !== null) this.awareness.setLocalState({});
    this.out.error(new LimitExceededError(limit, `the relay refused this tab's presence, which was dropped: ${reason}`));
  }

  /** Clears this tab's state (announced while the link is still up) and stops. */
  close(): void {
    this.awareness.setLocalState(null);
    this.awareness.off('update', this.onUpdate);
    this.awareness.destroy();
  }

  private readonly onUpdate = (
    { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ): void => {
    const self = this.awareness.clientID;
    if (origin === FROM_RELAY || origin === CROSS_TAB_ORIGIN) {
      // Someone removed our state (a relay drops states a leaving stock peer echoed for us).
      // y-protocols keeps it locally and bumps its clock; announce it again so others keep it.
      if (!removed.includes(self) || this.awareness.getLocalState() === null) return;
    } else if (!added.includes(self) && !updated.includes(self) && !removed.includes(self)) {
      // Only our own presence is ours to announce (others' states time out on their own).
      return;
    }
    const update = awarenessProtocol.encodeAwarenessUpdate(this.awareness, [self]);
    this.out.relay(update);
    this.out.tabs(update);
  };
}
