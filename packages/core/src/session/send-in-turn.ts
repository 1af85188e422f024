/**
 * Messages of a state sent in pieces (SessionReplica.stateUpdates) that are not yet written out
 * at once: each next piece is encoded and sent when an earlier one was written. Sending a
 * 10 MB state's 40 pieces in one go copied all of them (into messages, into frames) in one
 * task of the relay's event loop, ~20 ms during which no other document was served; two
 * ahead keep the socket busy without that.
 */
export const STATE_PIECES_AHEAD = 2;

/**
 * Bytes of other messages one state answer (one reader's session) holds behind itself
 * (`behind`): past them its owner holds one message that covers them instead (`holdInstead`) or
 * rushes the rest. Held outside the socket's count, while the answer's pieces wait for room.
 */
export const BEHIND_BYTES = 1024 * 1024;

/** Room in the relay's budget of unsent bytes (SessionOptions.room, UnsentBudget.hasRoom). */
export interface PieceRoom {
  /** True if a piece may be sent now; else false, and `wake` runs once one may (check again then). */
  hasRoom(wake: () => void): boolean;
}

/**
 * Sends `pieces` in order through `send`, at most `ahead` of them sent and not yet written
 * out: the others from the written-out callbacks (`onWritten`, which `send` passes to the
 * channel; none for the last piece, whose send has its own). `send` returns false when nothing
 * was sent (the session closed): the rest is then dropped. `rush` sends what is left at once
 * (something else must go out behind the whole state).
 *
 * With a `room`, every piece after the first waits for it: the caller checked the room before
 * the first (CoalescedReply), and the pieces behind it are what make a state answer cost its
 * size. Checked before the first only, answers started while their address was within its
 * share went on to queue their next pieces past twice the share (8 answers of 0.75 MiB, a 2 MiB
 * share: 4.3 MiB) and the relay closed the socket as a slow consumer. `rush` does not wait: the
 * message that must go behind the state cannot wait either. `behind` lets such a message wait
 * with the state instead (bounded), so that an edit does not rush out a state parked for room.
 */
export class InTurn {
  /** What the first send returned. */
  readonly first: boolean;
  private next = 0;
  private stopped = false;
  /** Pieces sent (but the last) whose written-out callback has not run yet. */
  private unwritten = 0;
  /** Inside `send`: a pump called from there (see `pump`) leaves the sending to the loop outside. */
  private sending = false;
  /** Messages to send once the last piece went (see `behind`), and their bytes. */
  private held: (() => void)[] = [];
  private heldBytes = 0;
  /** Messages to send after those (see `after`): never dropped for a covering one. */
  private trailing: (() => void)[] = [];

  constructor(
    private pieces: readonly Uint8Array[],
    private readonly ahead: number,
    private readonly send: (piece: Uint8Array, last: boolean, onWritten: (() => void) | undefined) => boolean,
    private readonly room?: PieceRoom,
  ) {
    this.first = this.sendNext();
    this.pump();
  }

  /** Every piece went out, or the session closed. */
  get done(): boolean {
    return this.stopped || this.next >= this.pieces.length;
  }

  /** Sends every piece left now, in order. */
  rush(): void {
    while (!this.done) this.sendNext();
  }

  /**
   * Holds a message of `bytes` that must go behind the state: `send` runs right after the last
   * piece, in the order held. Returns false when it was not held (the state is done, or past
   * BEHIND_BYTES held): the caller rushes the rest (which sends what was held) and sends it itself.
   */
  behind(bytes: number, send: () => void): boolean {
    if (this.done || this.heldBytes + bytes > BEHIND_BYTES) return false;
    this.held.push(send);
    this.heldBytes += bytes;
    return true;
  }

  /**
   * Drops what is held and holds `send` alone in its place, and nothing more after it (`behind`
   * refuses from now on): `send` must cover what was dropped and what would have come (a diff
   * made when it runs). False when the state is done (nothing to hold behind).
   */
  holdInstead(send: () => void): boolean {
    if (this.done) return false;
    this.held = [send];
    this.heldBytes = Infinity;
    return true;
  }

  /**
   * Holds a small message that refers to document content (a fenced write's reply: "your
   * replica has the value by then"): `send` runs after the last piece and after what `behind`
   * and `holdInstead` held, which `holdInstead` never drops. False when the state is done.
   */
  after(send: () => void): boolean {
    if (this.done) return false;
    this.trailing.push(send);
    return true;
  }

  /** Sends nothing more and lets go of the pieces and what was held (the session closed; a late wake finds it done). */
  stop(): void {
    this.stopped = true;
    this.pieces = [];
    this.held = [];
    this.heldBytes = 0;
    this.trailing = [];
  }

  /**
   * Sends pieces while fewer than `ahead` are unwritten and there is room. Also the room's
   * wake: the same function each time, so a waiting InTurn is registered once.
   *
   * Called from inside `send` (a channel that calls back at once; or the room's wake, which the
   * budget runs from a report made inside a send), it sends nothing: the piece being sent has
   * not reached the channel yet, and a piece sent from here would overtake it (the step 2 went
   * out before the piece rush() was sending). Whoever called `send` loops and looks again.
   */
  private readonly pump = (): void => {
    if (this.sending) return;
    while (!this.done && this.unwritten < this.ahead) {
      if (this.room && !this.room.hasRoom(this.pump)) return;
      this.sendNext();
    }
  };

  private sendNext(): boolean {
    if (this.done) return false;
    const i = this.next++;
    const last = i === this.pieces.length - 1;
    if (!last) this.unwritten++;
    this.sending = true;
    let sent = false;
    try {
      sent = this.send(this.pieces[i]!, last, last ? undefined : this.written);
    } finally {
      this.sending = false;
      // Right behind the last piece, even if its send threw (the held would be stranded).
      if (last) this.sendHeld();
    }
    if (!sent) this.stopped = true;
    return sent;
  }

  private sendHeld(): void {
    const held = this.held;
    const trailing = this.trailing;
    this.held = [];
    this.heldBytes = 0;
    this.trailing = [];
    for (const send of held) send();
    for (const send of trailing) send();
  }

  private readonly written = (): void => {
    this.unwritten--;
    this.pump();
  };
}

/** InTurn, for a caller that never rushes: returns what the first send returned. */
export function sendInTurn(
  pieces: readonly Uint8Array[],
  ahead: number,
  send: (piece: Uint8Array, last: boolean, onWritten: (() => void) | undefined) => boolean,
): boolean {
  return new InTurn(pieces, ahead, send).first;
}
