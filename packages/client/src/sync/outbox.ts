import type { OutboxRecord, ReplicaWrite } from '../storage/storage-adapter.js';
import { INCARNATION_KEY } from '../replica/local-replica.js';

/** One local update that the relay has not yet acknowledged as durable. */
interface Entry {
  group: Group;
  /** Cross-tab name of a local update of this session (undefined for loaded records). */
  id?: string;
  /**
   * Sequence number (on the current connection) of the first message that carried this
   * update, or null when no message on this connection has. See the relay's AckMessage.
   */
  seq: number | null;
}

/** The local updates of one write batch; stored as one outbox record. */
interface Group {
  key: string;
  entries: Set<Entry>;
  /** The count last written to storage, or null if the record is not stored. */
  storedCount: number | null;
  /** The Yjs client ids its updates were written under (see OutboxRecord.writers). */
  writers: Set<number>;
}

/**
 * Tracks local updates until the relay acknowledges them as durable, and keeps the stored
 * outbox records in step, so `pending` is exact and survives a reload.
 *
 * Acks name positions in the stream of document messages sent on one connection, so an
 * entry is durable once an ack covers the first message that carried it. Entries loaded
 * from storage, or created while offline, are carried by the next connection's sync step 2
 * (which holds everything the relay lacks).
 */
export class Outbox {
  private readonly groups = new Map<string, Group>();
  /** The group that collects local updates until the next commit. */
  private open: Group | null = null;
  /** This and the two below are made on first use: most documents never have a pending update. */
  private removed: Set<string> | null = null;
  /** Entries carried by messages of the current connection, in message order (acks come in that order too). */
  private sentQueue: Entry[] = [];
  private sentHead = 0;
  private byId: Map<string, Entry> | null = null;
  private size = 0;
  private nextGroup = 0;
  private waiters: Set<{ entries: Set<Entry>; resolve(): void }> | null = null;

  constructor(
    private readonly sessionId: string,
    /** Called whenever `pending` changes. */
    private readonly onChange: (pending: number) => void,
  ) {}

  /** Local updates not yet durable on the relay. */
  get pending(): number {
    return this.size;
  }

  /** Adopts records found in storage on open (earlier sessions, other tabs). */
  load(records: OutboxRecord[]): void {
    for (const r of records) {
      if (this.groups.has(r.key) || r.count <= 0) continue;
      const group: Group = { key: r.key, entries: new Set(), storedCount: r.count, writers: new Set(Array.isArray(r.writers) ? r.writers.filter(isClientId) : []) };
      for (let i = 0; i < r.count; i++) group.entries.add({ group, seq: null });
      this.groups.set(r.key, group);
      this.size += r.count;
    }
    if (records.length > 0) this.onChange(this.size);
  }

  /**
   * Records a new local update, written under Yjs client id `writer` (see `writers`); returns
   * a handle to mark it sent.
   */
  add(id?: string, writer?: number): Entry {
    if (!this.open) {
      this.open = { key: `${this.sessionId}-${this.nextGroup++}`, entries: new Set(), storedCount: null, writers: new Set() };
      this.groups.set(this.open.key, this.open);
    }
    if (writer !== undefined) this.open.writers.add(writer);
    const entry: Entry = { group: this.open, seq: null, id };
    this.open.entries.add(entry);
    if (id !== undefined) (this.byId ??= new Map()).set(id, entry);
    this.size++;
    this.onChange(this.size);
    return entry;
  }

  /** The update behind `entry` went out in message `seq`. */
  sent(entry: Entry, seq: number): void {
    if (entry.seq !== null) return;
    entry.seq = seq;
    this.sentQueue.push(entry);
  }

  /** A sync step 2 (message `seq`) carried everything the document holds. */
  sentAll(seq: number): void {
    for (const group of this.groups.values()) {
      for (const e of group.entries) if (e.seq === null) this.sent(e, seq);
    }
  }

  /** The connection closed: its sequence numbers mean nothing to the next one. */
  resetSent(): void {
    for (const group of this.groups.values()) for (const e of group.entries) e.seq = null;
    this.sentQueue = [];
    this.sentHead = 0;
  }

  /**
   * The relay made messages 1..seq of this connection durable. Returns the ids of the
   * local updates that became durable.
   */
  ack(seq: number): string[] {
    const durable: string[] = [];
    const sizeBefore = this.size;
    const queue = this.sentQueue;
    while (this.sentHead < queue.length && queue[this.sentHead]!.seq! <= seq) {
      const e = queue[this.sentHead++]!;
      if (this.remove(e) && e.id !== undefined) durable.push(e.id);
    }
    if (this.sentHead > 1024 && this.sentHead * 2 > queue.length) {
      this.sentQueue = queue.slice(this.sentHead);
      this.sentHead = 0;
    }
    if (this.size !== sizeBefore) this.onChange(this.size);
    return durable;
  }

  /** Another tab reports these local updates of ours durable (it sent them for us). */
  markDurable(ids: string[]): void {
    const sizeBefore = this.size;
    for (const id of ids) {
      const e = this.byId?.get(id);
      if (e) this.remove(e);
    }
    if (this.size !== sizeBefore) this.onChange(this.size);
  }

  /** Drops a durable entry; false if it was already gone. */
  private remove(e: Entry): boolean {
    const group = e.group;
    if (!group.entries.delete(e)) return false;
    if (e.id !== undefined) this.byId?.delete(e.id);
    this.size--;
    for (const w of this.waiters ?? NO_WAITERS) {
      if (w.entries.delete(e) && w.entries.size === 0) {
        this.waiters!.delete(w);
        w.resolve();
      }
    }
    if (group.entries.size === 0 && group !== this.open) {
      this.groups.delete(group.key);
      if (group.storedCount !== null) (this.removed ??= new Set()).add(group.key);
    }
    return true;
  }

  /**
   * The Yjs client ids pending updates were written under (this session's, earlier page
   * loads' and other tabs' found in storage), latest batches first, at most `max`: a relay
   * with auth claims for this user only the ids its hello declares, and an id whose edits were
   * uploaded undeclared would be anyone's to take. Costs what the outbox's batches hold.
   */
  writers(max: number): number[] {
    if (this.groups.size === 0) return [];
    const ids = new Set<number>();
    const groups = Array.from(this.groups.values());
    for (let i = groups.length - 1; i >= 0 && ids.size < max; i--) {
      if (groups[i]!.entries.size === 0) continue;
      for (const id of groups[i]!.writers) {
        ids.add(id);
        if (ids.size >= max) break;
      }
    }
    return [...ids];
  }

  /** Resolves once every update pending now is durable (or at once if none is). */
  whenDurable(): { promise: Promise<void>; cancel(): void } {
    const entries = new Set<Entry>();
    for (const group of this.groups.values()) for (const e of group.entries) entries.add(e);
    if (entries.size === 0) return { promise: Promise.resolve(), cancel: () => {} };
    let waiter!: { entries: Set<Entry>; resolve(): void };
    const promise = new Promise<void>((resolve) => {
      waiter = { entries, resolve };
      (this.waiters ??= new Set()).add(waiter);
    });
    return { promise, cancel: () => this.waiters?.delete(waiter) };
  }

  /** Adds the outbox's changes since the last commit to `batch` (LocalReplica hook). */
  fillBatch(batch: ReplicaWrite): void {
    this.open = null;
    if (this.removed) for (const key of this.removed) batch.deleteOutbox.push(key);
    this.removed?.clear();
    for (const group of this.groups.values()) {
      if (group.entries.size === 0) {
        this.groups.delete(group.key);
        if (group.storedCount !== null) batch.deleteOutbox.push(group.key);
      } else if (group.entries.size !== group.storedCount) {
        batch.putOutbox.push({ key: group.key, count: group.entries.size, ...(group.writers.size > 0 ? { writers: [...group.writers] } : {}) });
      }
    }
  }

  /** A batch from `fillBatch` committed: those counts are now what storage holds. */
  committed(batch: ReplicaWrite): void {
    for (const r of batch.putOutbox) {
      // The replica's incarnation record, not a batch of updates (LocalReplica).
      if (r.key === INCARNATION_KEY) continue;
      const group = this.groups.get(r.key);
      if (group) group.storedCount = r.count;
      else (this.removed ??= new Set()).add(r.key); // acknowledged while the write was in flight
    }
  }
}

export type OutboxEntry = Entry;

const NO_WAITERS: readonly never[] = [];

/** A Yjs client id (stored records come from storage other versions may have written). */
function isClientId(id: unknown): id is number {
  return Number.isInteger(id) && (id as number) >= 0 && (id as number) <= 0xffffffff;
}
