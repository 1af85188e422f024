/**
 * Who holds what, durably, for one loaded document: the bookkeeping behind quorum durability
 * and the replication-lag metrics.
 *
 * Every change that integrates into the document gets the next position (`applied`). The
 * relay's own store is durable through position `localDurable` (appends commit in order).
 * A peer relay is durable through position `marks[peer]` once it acknowledged a message we
 * sent it at that position: its ack means it committed that message and everything it had
 * applied before, and the message (a broadcast batch, or a sync step 2) carried every change
 * we had applied by then that the peer did not send us itself.
 *
 * A change a peer sent us does not count as durable on that peer until it acknowledges a later
 * message: relays forward changes before their own store commits them, so "it had them first"
 * says nothing about its disk. (Lag skips them: the peer has them, at least in memory.) A
 * quorum waiter therefore asks the peers for a fresh ack (`RelayDoc.requestPeerAcks`).
 */
export class DocReplication {
  /** Position of the latest integrated change. */
  private appliedSeq = 0;
  /** Positions durable in this relay's own store. */
  private localDurableSeq = 0;
  /**
   * Changes not yet durable everywhere, in order (what lag checks walk): `log[head..]`. A head
   * index instead of `splice`, which would move the whole log on every change.
   */
  private log: { seq: number; bytes: number; source: string | null }[] = [];
  private head = 0;
  private readonly marks = new Map<string, number>();
  private readonly waiters = new Set<{ seq: number; resolve(): void }>();

  /**
   * @param majority Relays that must hold a change for a quorum (this one included).
   * @param maxLog Bound on remembered changes; past it the oldest are forgotten (the lag of a
   *   peer whose mark is older is then undercounted).
   */
  constructor(
    private readonly majority: number,
    private readonly maxLog = 200_000,
  ) {}

  get applied(): number {
    return this.appliedSeq;
  }

  /** A change integrated; `source` is the peer relay it came from, if any. Returns its position. */
  recordApplied(bytes: number, source: string | null): number {
    const seq = ++this.appliedSeq;
    this.log.push({ seq, bytes, source });
    if (this.log.length - this.head > this.maxLog) this.dropBefore(this.log.length - this.maxLog);
    return seq;
  }

  /** This relay's store committed every change through `seq`. */
  recordLocalDurable(seq: number): void {
    if (seq <= this.localDurableSeq) return;
    this.localDurableSeq = seq;
    this.trim();
    this.settle();
  }

  /** `peer` acknowledged a message sent when the document was at position `seq`. */
  recordPeerDurable(peer: string, seq: number): void {
    if (seq <= (this.marks.get(peer) ?? 0)) {
      if (!this.marks.has(peer)) this.marks.set(peer, 0);
      return;
    }
    this.marks.set(peer, seq);
    this.trim();
    this.settle();
  }

  /** Starts tracking `peer` (its lag counts from the start of the document). */
  meet(peer: string): void {
    if (!this.marks.has(peer)) this.marks.set(peer, 0);
  }

  /** Stops tracking `peer` (a relay id that left the mesh, e.g. an incarnation that restarted). */
  forget(peer: string): void {
    if (!this.marks.delete(peer)) return;
    this.trim();
  }

  /** Changes remembered because some tracked relay (this one included) may not hold them yet. */
  get retained(): number {
    return this.log.length - this.head;
  }

  /** Peers tracked so far. */
  get peers(): string[] {
    return [...this.marks.keys()];
  }

  /** Changes and bytes `peer` does not hold durably yet (as far as this relay knows). */
  lag(peer: string): { updates: number; bytes: number } {
    const mark = this.marks.get(peer) ?? 0;
    let updates = 0;
    let bytes = 0;
    for (let i = this.firstAfter(mark); i < this.log.length; i++) {
      const e = this.log[i]!;
      if (e.source === peer) continue;
      updates++;
      bytes += e.bytes;
    }
    return { updates, bytes };
  }

  /** True when `peer` acknowledged, as durable, every change through position `seq`. */
  peerHolds(peer: string, seq: number): boolean {
    return (this.marks.get(peer) ?? 0) >= seq;
  }

  /** Relays (this one included) that durably hold every change through `seq`. */
  holders(seq: number): number {
    let n = this.localDurableSeq >= seq ? 1 : 0;
    for (const peer of this.marks.keys()) if (this.peerHolds(peer, seq)) n++;
    return n;
  }

  /**
   * Resolves once a majority of the mesh durably holds every change through `seq`.
   * Returns a cancel function for a caller that stops waiting.
   */
  whenQuorum(seq: number, resolve: () => void): () => void {
    if (this.holders(seq) >= this.majority) {
      resolve();
      return () => {};
    }
    const waiter = { seq, resolve };
    this.waiters.add(waiter);
    return () => this.waiters.delete(waiter);
  }

  private settle(): void {
    for (const w of this.waiters) {
      if (this.holders(w.seq) >= this.majority) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** Forgets changes every tracked peer acknowledged (and this relay committed). */
  private trim(): void {
    let min = this.localDurableSeq;
    for (const m of this.marks.values()) min = Math.min(min, m);
    this.dropBefore(this.firstAfter(min));
  }

  /** Forgets log entries before index `index`; compacts the array once half of it is dead. */
  private dropBefore(index: number): void {
    if (index <= this.head) return;
    this.head = index;
    if (this.head > 1024 && this.head * 2 > this.log.length) {
      this.log = this.log.slice(this.head);
      this.head = 0;
    }
  }

  /** Index of the first logged change after position `seq`. */
  private firstAfter(seq: number): number {
    let lo = this.head;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.log[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
