/**
 * Coalesces requests whose answers each cost a full-state encoding (sync step 1,
 * query-awareness). The first request is answered at once; while that answer's bytes are
 * still waiting in the socket's buffer, later requests are not answered but remembered, only
 * the latest one, and answered once the previous answer was written out. An answer computed
 * later covers everything an earlier one would have (the document and its awareness only
 * grow newer), so an honest client that resyncs still gets its answer, while a client that
 * asks again and again without reading costs the relay at most one answer in memory and one
 * encoding per answer it actually reads.
 */
export class CoalescedReply<T> {
  private pending: { request: T } | null = null;
  private inFlight = false;

  /**
   * @param canAnswer false while the connection may not answer yet (its document is paused);
   *   call `retry` when that changes.
   * @param answer sends the answer and returns true, passing `written` as the send's
   *   written-out callback; returns false when it sent nothing. Must not throw: it may run
   *   from that callback, outside any message handler (fail the connection instead).
   * @param room the connection's send buffer: while its address is over its share of the
   *   relay's unsent-bytes budget, the answer waits (the buffer wakes this up, see
   *   UnsentBudget.hasRoom) instead of being encoded.
   */
  constructor(
    private readonly canAnswer: () => boolean,
    private readonly answer: (request: T, written: () => void) => boolean,
    private readonly room?: { hasRoom(wake: () => void): boolean },
  ) {}

  /**
   * A request waits for its answer (for room, for the connection to be allowed to answer, or for
   * the previous answer to be written out): that answer, made later, will be made of what is
   * there then.
   */
  get waiting(): boolean {
    return this.pending !== null;
  }

  /** A new request; replaces one still waiting. */
  request(request: T): void {
    this.pending = { request };
    this.retry();
  }

  /** Answers the waiting request if the previous answer left and the connection may answer. */
  retry(): void {
    if (!this.pending || this.inFlight || !this.canAnswer()) return;
    // `written` retries: nothing is in flight while waiting for room.
    if (this.room && !this.room.hasRoom(this.written)) return;
    const { request } = this.pending;
    this.pending = null;
    this.inFlight = true;
    let sent = false;
    try {
      sent = this.answer(request, this.written);
    } finally {
      if (!sent) this.inFlight = false;
    }
  }

  private readonly written = (): void => {
    this.inFlight = false;
    this.retry();
  };
}
