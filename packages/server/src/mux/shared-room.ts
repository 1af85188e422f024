/** Room in the relay's unsent-bytes budget, as one account (a socket's SendBuffer) gives it. */
export interface Room {
  /** True if a full-state answer may be sent now; else `wake` runs once it may (one wake per account). */
  hasRoom(wake: () => void): boolean;
}

/**
 * The room of one multiplexed socket, for all its sessions. The unsent budget keeps one wake per
 * account (UnsentBudget.hasRoom), and the sessions of a socket share its account, so each
 * session waiting for room would replace the wake of the one before: only the last would ever
 * be answered. Here every waiting session's wake is kept, and the socket registers one wake
 * with the budget that runs them all (each checks again, and waits again if the room is gone).
 */
export class SharedRoom implements Room {
  private waiting = new Set<() => void>();

  constructor(private readonly socket: Room) {}

  hasRoom(wake: () => void): boolean {
    if (this.socket.hasRoom(this.wakeAll)) return true;
    this.waiting.add(wake);
    return false;
  }

  private readonly wakeAll = (): void => {
    const woken = this.waiting;
    this.waiting = new Set();
    for (const wake of woken) wake();
  };
}
