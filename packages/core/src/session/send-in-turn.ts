/**
 * Messages of a state sent in pieces (SessionReplica.stateUpdates) that are not yet written out
 * at once: each next piece is encoded and sent when an earlier one was written. Sending a
 * 10 MB state's 40 pieces in one go copied all of them (into messages, into frames) in one
 * task of the relay's event loop, ~20 ms during which no other document was served; two
 * ahead keep the socket busy without that.
 */
export const STATE_PIECES_AHEAD = 2;

/**
 * Sends `pieces` in order through `send`, at most `ahead` of them sent and not yet written
 * out: the others from the written-out callbacks (`onWritten`, which `send` passes to the
 * channel; none for the last piece, whose send has its own). `send` returns false when nothing
 * was sent (the session closed): the rest is then dropped. `rush` sends what is left at once
 * (something else must go out behind the whole state).
 */
export class InTurn {
  /** What the first send returned. */
  readonly first: boolean;
  private next = 0;
  private stopped = false;

  constructor(
    private readonly pieces: readonly Uint8Array[],
    ahead: number,
    private readonly send: (piece: Uint8Array, last: boolean, onWritten: (() => void) | undefined) => boolean,
  ) {
    this.first = this.sendNext();
    // A channel may call back at once (inside `send`), which already sent the next ones.
    while (!this.stopped && this.next < Math.min(ahead, pieces.length)) this.sendNext();
  }

  /** Every piece went out, or the session closed. */
  get done(): boolean {
    return this.stopped || this.next >= this.pieces.length;
  }

  /** Sends every piece left now, in order. */
  rush(): void {
    while (!this.done) this.sendNext();
  }

  private readonly sendNext = (): boolean => {
    if (this.done) return false;
    const i = this.next++;
    const last = i === this.pieces.length - 1;
    const sent = this.send(this.pieces[i]!, last, last ? undefined : () => void this.sendNext());
    if (!sent) this.stopped = true;
    return sent;
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
