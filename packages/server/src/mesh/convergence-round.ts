/**
 * One socket of a document link this relay dialled, until it converged: both relays durably
 * hold what the other had when the socket opened. That is two events, in either order:
 * - the peer acknowledged our first sync step 2 (its ack of that message, or a later one);
 * - the peer's sync step 2 (its answer to our step 1) is committed here, in order.
 * replicate-all sweeps wait for it (PeerLink.whenConverged); a socket that gets this far is
 * healthy, so the link's reconnect backoff starts over.
 */
export class ConvergenceRound {
  private readonly openedAt = performance.now();
  /** Number of our first sync step 2 on this socket; 0 until it went out. */
  private ourStep2 = 0;
  private step2Acked = false;
  private step2Received = false;
  private doneValue = false;

  /** `done` runs once, with the seconds from the socket's opening. */
  constructor(private readonly onDone: (seconds: number) => void) {}

  get done(): boolean {
    return this.doneValue;
  }

  /** Our sync step 2 went out as message `seq`. */
  sentStep2(seq: number): void {
    if (this.ourStep2 === 0) this.ourStep2 = seq;
  }

  /** The peer acknowledged our messages 1..`seq`. */
  acked(seq: number): void {
    if (this.ourStep2 === 0 || seq < this.ourStep2 || this.step2Acked) return;
    this.step2Acked = true;
    this.check();
  }

  /** A sync step 2 from the peer is committed here. */
  received(): void {
    if (this.step2Received) return;
    this.step2Received = true;
    this.check();
  }

  private check(): void {
    if (this.doneValue || !this.step2Acked || !this.step2Received) return;
    this.doneValue = true;
    this.onDone((performance.now() - this.openedAt) / 1000);
  }
}
