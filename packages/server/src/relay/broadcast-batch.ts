import * as Y from 'yjs';

/**
 * Collects updates applied during one event-loop turn and plans what each recipient gets:
 * one merged update of everything it did not send itself. Batching turns N updates x M
 * connections frames into at most M frames per turn, which keeps fan-out cheap under load;
 * a lone update is forwarded as is (no merge).
 */
export class BroadcastBatch<Source> {
  private updates: { update: Uint8Array; source: Source | null }[] = [];

  get size(): number {
    return this.updates.length;
  }

  /** Drops updates added after the batch had `size` entries (a transaction that failed). */
  truncate(size: number): void {
    this.updates.length = Math.min(this.updates.length, size);
  }

  add(update: Uint8Array, source: Source | null): void {
    this.updates.push({ update, source });
  }

  /**
   * Empties the batch and returns a function giving the update to send to `recipient`,
   * or null when the batch holds only its own updates.
   */
  take(): (recipient: Source) => Uint8Array | null {
    const updates = this.updates;
    this.updates = [];
    const sources = new Set(updates.map((u) => u.source));
    const merge = (list: Uint8Array[]): Uint8Array | null =>
      list.length === 0 ? null : list.length === 1 ? list[0]! : Y.mergeUpdates(list);
    let all: Uint8Array | null | undefined;
    const allBut = new Map<Source, Uint8Array | null>();
    return (recipient) => {
      if (!sources.has(recipient)) return (all ??= merge(updates.map((u) => u.update)));
      let mine = allBut.get(recipient);
      if (mine === undefined) {
        mine = merge(updates.filter((u) => u.source !== recipient).map((u) => u.update));
        allBut.set(recipient, mine);
      }
      return mine;
    };
  }
}
