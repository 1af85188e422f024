/**
 * How a dialled link proves it is alive. Any frame from the other side counts as life; after
 * `intervalMs` without one the dialer sends a probe, and a link that stays silent for
 * `timeoutMs` after it is dead (a half-open TCP connection, a frozen peer, a partition), so a
 * dead link is noticed within intervalMs + timeoutMs however the OS sees it.
 * - 'app-ping': the probe is a capsync `ping` message (browsers cannot send WebSocket pings);
 *   its `pong` is the dialer's and is not passed on. Needs a peer that answers pings.
 * - 'transport-ping': the probe is the transport's own (a `ws` ping frame, `DialTransport.ping`);
 *   `timeoutMs` defaults to `intervalMs`.
 * - 'none': no probes (the transport or the owner watches the link).
 */
export type Liveness =
  | { kind: 'app-ping'; intervalMs: number; timeoutMs: number }
  | { kind: 'transport-ping'; intervalMs: number; timeoutMs?: number }
  | { kind: 'none' };

/** Schedules `fn` after `ms`; returns its cancel. */
export type Later = (ms: number, fn: () => void) => () => void;

const now: () => number = () => globalThis.performance.now();

/**
 * Watches one link (see Liveness). `heard()` runs for every frame, so it only records the time;
 * the one timer looks at it when it fires and waits out the rest of the interval.
 */
export class LivenessWatch {
  private heardAt = now();
  private probing = false;
  private cancel: (() => void) | null = null;

  constructor(
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
    private readonly probe: () => void,
    private readonly dead: () => void,
    private readonly later: Later,
  ) {
    this.arm(intervalMs);
  }

  /** Something arrived: the link is alive, and the next probe waits a full interval of silence. */
  heard(): void {
    this.heardAt = now();
    if (!this.probing) return;
    this.probing = false;
    this.arm(this.intervalMs);
  }

  stop(): void {
    this.cancel?.();
    this.cancel = null;
  }

  private arm(ms: number): void {
    this.cancel?.();
    this.cancel = this.later(ms, this.fire);
  }

  private readonly fire = (): void => {
    this.cancel = null;
    if (this.probing) {
      this.dead();
      return;
    }
    const silentMs = now() - this.heardAt;
    if (silentMs < this.intervalMs) {
      this.arm(this.intervalMs - silentMs);
      return;
    }
    this.probing = true;
    this.arm(this.timeoutMs);
    this.probe();
  };
}
