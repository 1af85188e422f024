import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { CapsyncError } from '@capsync/core';
import { openCrossTab, type CrossTabChannel, type CrossTabMessage } from './cross-tab.js';
import { CROSS_TAB_ORIGIN } from './origins.js';
import type { Outbox } from './outbox.js';

/** What a TabShare needs of its document handle. */
export interface TabShareContext {
  name: string;
  doc: Y.Doc;
  awareness: awarenessProtocol.Awareness;
  outbox: Outbox;
  /** This tab's session id: names its local updates and its messages. */
  sessionId: string;
  /** Another tab's update still not reported durable after this long is sent by this tab too. */
  takeoverMs: number;
  /** Sends an update to the relay; its message seq, or null when offline. */
  sendUpdate(update: Uint8Array): number | null;
  /** This tab's own presence, encoded, or null when it has none. */
  ownPresence(): Uint8Array | null;
  error(err: CapsyncError): void;
}

/**
 * The other tabs of one document (BroadcastChannel): edits and presence go both ways at once,
 * offline too; a tab opening asks the others for what it lacks; updates the relay made durable
 * are reported to the tab they came from. Each tab sends its own edits to the relay; another
 * tab's edits not reported durable within `takeoverMs` (that tab closed, crashed, or is cut
 * off) are sent by this one, and reported durable on its ack.
 */
export class TabShare {
  private channel: CrossTabChannel | null = null;
  private closed = false;
  /** Other tabs' updates not yet reported durable: entry id → update and arrival time. */
  private readonly foreign = new Map<string, { update: Uint8Array; at: number }>();
  private takeoverTimer: ReturnType<typeof setTimeout> | null = null;
  /** Other tabs' updates sent by this tab, by message seq, to report them durable on ack. */
  private takenOver: { seq: number; entries: string[] }[] = [];

  constructor(private readonly ctx: TabShareContext) {}

  /** Joins the document's channel (where BroadcastChannel exists) and asks the other tabs for what this one lacks. */
  open(): void {
    this.channel = openCrossTab(this.ctx.name, (msg) => this.onMessage(msg));
    this.channel?.post({ type: 'sync-step-1', from: this.ctx.sessionId, stateVector: Y.encodeStateVector(this.ctx.doc) });
  }

  /** This tab's local updates (merged), named by their outbox ids. */
  shareUpdate(update: Uint8Array, entries: string[]): void {
    this.channel?.post({ type: 'update', from: this.ctx.sessionId, update, entries });
  }

  sharePresence(update: Uint8Array): void {
    this.channel?.post({ type: 'awareness', from: this.ctx.sessionId, update });
  }

  /** The relay acked messages up to `seq`: these local updates, and the other tabs' ones sent for them, are durable. */
  acked(seq: number, durable: string[]): void {
    while (this.takenOver.length > 0 && this.takenOver[0]!.seq <= seq) durable.push(...this.takenOver.shift()!.entries);
    if (durable.length > 0) this.channel?.post({ type: 'durable', from: this.ctx.sessionId, entries: durable });
  }

  /**
   * The Yjs client ids of the other tabs' updates this tab may send (not reported durable
   * yet), at most `max`, for its hello (see declaredWriters). Decodes each such update's state
   * vector: once per connection, never per edit.
   */
  writers(max: number): number[] {
    const ids = new Set<number>();
    const seen = new Set<Uint8Array>();
    for (const { update } of this.foreign.values()) {
      if (ids.size >= max) break;
      if (seen.has(update)) continue;
      seen.add(update);
      try {
        for (const id of Y.decodeStateVector(Y.encodeStateVectorFromUpdate(update)).keys()) if (ids.size < max) ids.add(id);
      } catch {
        // Applying it failed too (reported then): nothing of it is sent.
      }
    }
    return [...ids];
  }

  /** The relay link closed: its acks will never come; the next sync step 2 carries what was taken over. */
  onLinkClose(): void {
    this.takenOver = [];
  }

  close(): void {
    this.closed = true;
    if (this.takeoverTimer) clearTimeout(this.takeoverTimer);
    this.channel?.close();
  }

  private onMessage(msg: CrossTabMessage): void {
    if (this.closed) return;
    const self = this.ctx.sessionId;
    switch (msg.type) {
      case 'update':
        this.apply(msg.update);
        for (const id of msg.entries) this.foreign.set(id, { update: msg.update, at: Date.now() });
        this.scheduleTakeover();
        return;
      case 'durable':
        for (const id of msg.entries) this.foreign.delete(id);
        this.ctx.outbox.markDurable(msg.entries);
        return;
      case 'awareness':
        try {
          awarenessProtocol.applyAwarenessUpdate(this.ctx.awareness, msg.update, CROSS_TAB_ORIGIN);
        } catch {
          // A tab of another version; ignore its presence.
        }
        return;
      case 'sync-step-1': {
        const update = Y.encodeStateAsUpdate(this.ctx.doc, msg.stateVector);
        this.channel?.post({ type: 'sync-step-2', from: self, to: msg.from, update });
        const presence = this.ctx.ownPresence();
        if (presence) this.channel?.post({ type: 'awareness', from: self, update: presence });
        return;
      }
      case 'sync-step-2':
        if (msg.to === self) this.apply(msg.update);
        return;
    }
  }

  private apply(update: Uint8Array): void {
    try {
      Y.applyUpdate(this.ctx.doc, update, CROSS_TAB_ORIGIN);
    } catch (err) {
      this.ctx.error(new CapsyncError('invalid-update', 'an update from another tab could not be applied', { cause: err }));
    }
  }

  /**
   * Another tab normally sends its own updates and reports them durable. If it does not
   * within `takeoverMs` (closed, crashed, cut off), this tab sends them: they must not wait
   * for the next reconnect.
   */
  private scheduleTakeover(): void {
    if (this.takeoverTimer || this.foreign.size === 0) return;
    this.takeoverTimer = setTimeout(() => {
      this.takeoverTimer = null;
      const cutoff = Date.now() - this.ctx.takeoverMs;
      const stale = new Set<Uint8Array>();
      const entries: string[] = [];
      for (const [id, f] of this.foreign) {
        if (f.at <= cutoff) {
          stale.add(f.update);
          entries.push(id);
          this.foreign.delete(id);
        }
      }
      // Offline: nothing to do, the next connection's sync step 2 carries them anyway.
      const seq = stale.size > 0 ? this.ctx.sendUpdate(Y.mergeUpdates([...stale])) : null;
      if (seq !== null) this.takenOver.push({ seq, entries });
      this.scheduleTakeover();
    }, this.ctx.takeoverMs);
  }
}
