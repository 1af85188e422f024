import { CapsyncError } from '@capsync/core';
import type { UnsentAccount, UnsentBudget, UnsentHolder } from './unsent-budget.js';

/**
 * The part of a WebSocket the relay sends through. `bufferedAmount` is the number of bytes
 * queued but not yet handed to the operating system. `send`'s callback, when the socket
 * supports it (ws does), runs once those bytes were written out (or the socket failed).
 */
export interface OutboundSocket {
  send(data: Uint8Array, cb?: (err?: Error) => void): void;
  readonly bufferedAmount: number;
  /** Drops the connection at once, without a closing handshake. */
  terminate?(): void;
}

export interface SendBufferOptions {
  /**
   * Bytes a socket may have queued for longer than `slowConsumerGraceMs` before the relay
   * gives up on it (slow consumer). Four times this closes it at once, to bound memory.
   */
  sendBufferLimit: number;
  /** How long a socket may stay over `sendBufferLimit` (a burst) before it is closed. */
  slowConsumerGraceMs: number;
  /** The relay-wide budget this connection's unsent bytes count against (see UnsentBudget). */
  budget?: UnsentBudget | undefined;
  /** The client's address, for its share of the budget; undefined for peer relays. */
  address?: string | undefined;
}

/**
 * The one send-buffer accounting of every connection the relay serves (documents, locks, the
 * mesh control link): every outgoing message goes through `send`, whatever it answers, so a
 * peer that does not read cannot make the relay buffer without bound.
 *
 * A burst may push the buffer over the limit for a moment; a consumer that stays over it for
 * the grace period, or goes past four times the limit, is reported to `onSlow` (which closes
 * the connection with 4429 slow-consumer). So the memory one connection holds in unsent bytes
 * is bounded by four times the limit plus the largest single message.
 *
 * With a `budget`, the unsent bytes also count against the relay-wide budget (UnsentBudget),
 * which closes the largest consumers that stopped reading when many connections together hold
 * too much. The count is reported after every send (the `bufferedAmount` read the check makes
 * anyway), and before a send when bytes were pending, so that a buffer found empty ends its
 * backlog. No write callbacks: passing one to every send costs Node a closure per write (about
 * 1.5x the CPU per delivered message, measured). A buffer that empties with no send after it
 * is seen by the budget's pass (`refresh`), which runs only while a bound is exceeded.
 */
export class SendBuffer implements UnsentHolder {
  private slowTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly account: UnsentAccount | null;

  constructor(
    private readonly socket: OutboundSocket,
    private readonly options: SendBufferOptions,
    private readonly onSlow: (err: CapsyncError) => void,
  ) {
    this.account = options.budget?.open(options.address, this) ?? null;
  }

  /** True once the consumer was given up on or the connection closed: nothing more is sent. */
  get isStopped(): boolean {
    return this.stopped;
  }

  /**
   * Sends `bytes` (unless stopped) and accounts for them. `onWritten` runs once the socket
   * wrote them out (or failed to); never if nothing was sent. Returns false when nothing was
   * sent or the consumer was given up on.
   */
  send(bytes: Uint8Array, onWritten?: () => void): boolean {
    if (this.stopped) return false;
    // Bytes were pending: if the buffer is empty now, that backlog ended (a new one starts).
    const drained = this.account !== null && this.account.bytes > 0 && this.socket.bufferedAmount === 0;
    if (onWritten) this.socket.send(bytes, () => onWritten());
    else this.socket.send(bytes);
    // Reported after the send: the report may wake holders waiting for room (UnsentBudget.hasRoom),
    // whose sends must not reach the socket before this one (a state's step 2 before its piece).
    if (drained) this.options.budget!.update(this.account!, 0);
    return this.check();
  }

  /**
   * Checks the buffer now (also for bytes queued outside `send`, such as WebSocket pongs).
   * Returns false once the consumer was given up on, true while it may still be sent to.
   */
  check(): boolean {
    if (this.stopped) return false;
    const { sendBufferLimit, slowConsumerGraceMs } = this.options;
    const buffered = this.socket.bufferedAmount;
    if (this.account && !this.options.budget!.update(this.account, buffered)) return false;
    if (buffered <= sendBufferLimit) {
      // Drained since the burst began: the grace period starts over at the next burst.
      this.clearTimer();
      return true;
    }
    if (buffered > 4 * sendBufferLimit) {
      this.giveUp(new CapsyncError('slow-consumer', `send buffer over ${4 * sendBufferLimit} bytes`));
      return false;
    }
    if (!this.slowTimer) {
      this.slowTimer = setTimeout(() => {
        this.slowTimer = null;
        if (this.socket.bufferedAmount > sendBufferLimit) {
          this.giveUp(new CapsyncError('slow-consumer', `send buffer over ${sendBufferLimit} bytes for ${slowConsumerGraceMs} ms`));
        }
      }, slowConsumerGraceMs);
      this.slowTimer.unref();
    }
    return true;
  }

  /** The connection closed: no more sends or timers. */
  stop(): void {
    this.stopped = true;
    this.clearTimer();
    if (this.account) this.options.budget!.close(this.account);
  }

  /**
   * Whether a full-state answer may be sent now (see UnsentBudget.hasRoom); if not, `wake` runs
   * once it may. Always true without a budget.
   */
  hasRoom(wake: () => void): boolean {
    return this.account === null || this.options.budget!.hasRoom(this.account, wake);
  }

  /**
   * UnsentHolder: the relay-wide budget gives up on this consumer. It is closed as a slow
   * consumer and dropped at once: its unsent bytes leave the budget now, so they must leave
   * memory now too (a close frame queued behind them would not reach a client that stopped
   * reading anyway).
   */
  evict(err: CapsyncError): void {
    this.giveUp(err);
    this.socket.terminate?.();
  }

  /** UnsentHolder: reports the buffer as it is now. */
  refresh(): void {
    if (!this.stopped && this.account) this.options.budget!.update(this.account, this.socket.bufferedAmount);
  }

  private giveUp(err: CapsyncError): void {
    if (this.stopped) return;
    this.stop();
    this.onSlow(err);
  }

  private clearTimer(): void {
    if (this.slowTimer) {
      clearTimeout(this.slowTimer);
      this.slowTimer = null;
    }
  }
}
