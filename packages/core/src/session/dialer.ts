import { ObservableV2 } from 'lib0/observable';
import { CapsyncError } from '../errors.js';
import { CloseCode } from '../protocol/close-codes.js';
import { Backoff } from './backoff.js';
import { DialAttempt, laterFor, type AttemptOwner } from './dial-attempt.js';
import type { DialState, DialerEvents, DialerOptions } from './dialer-types.js';
import type { Later } from './liveness.js';
import { defaultRefusalAction, refusalFor } from './refusals.js';

export type { Liveness } from './liveness.js';
export * from './dialer-types.js';
export { dialOnce, type OneDial } from './dial-attempt.js';

/**
 * Why an attempt or link ended, for the next URL and delay: 'unreachable' (connect error or
 * timeout, liveness death, a close that is not a refusal), 'refused' (a retryable refusal), or
 * 'local' (this side failed before any relay was involved: the credential function threw).
 */
type Failure = 'unreachable' | 'refused' | 'local';

/**
 * The one outbound link of capsync (client documents and locks; relay peers and the lock
 * authority): dials one of `urls` and, when a link ends, dials again with the one Backoff. One
 * attempt (credential, connect, hello, liveness) is a DialAttempt (dial-attempt.ts); this is the
 * retry loop around it. `dialOnce` is one attempt without the loop. Transport-agnostic:
 * `connect` makes the channel (a WebSocket, a memory pair).
 *
 * Contract:
 * - One link at a time. Each attempt asks `credential()` afresh and offers it as the
 *   `capsync.jwt.` sub-protocol. The attempt must open (and, with `expectHello`, hear a hello)
 *   within `handshakeTimeoutMs`, else it is closed with 1001 and counts as unreachable.
 * - On open our hello goes out first, then 'open' hands over `link.channel`: every frame of the
 *   link except the dialer's own (pongs of app pings; the awaited hello) arrives there, in
 *   order. A hello of a protocol version not spoken here closes the link with 4426.
 * - Nothing of a link that is gone leaks into the next: once 'close' is emitted its channel is
 *   closed and no frame of it is delivered; each link starts with its own 'open'.
 *   `link.channel.close(code, reason)` ends the link as if the other side had closed with that
 *   code (the same refusal policy applies).
 * - URLs: the first attempt goes to `urls[0]`; the dialer stays on a URL that works (`stop`/
 *   `start` and the network coming back retry it). Every failure but a stop moves the next
 *   attempt to the next URL, round robin. Within one round, moving on after an unreachable URL
 *   waits only a jittered delay under `backoff.baseMs`; once every URL failed in a row, or one
 *   refused, the next attempt waits the Backoff (and at least `minDelayAfter[code]`).
 *   `healthy()` (the owner saw the link work) starts a new round with the backoff reset. A
 *   failing credential function retries the same URL after the backoff.
 * - Refusals (close codes with a typed error, refusals.ts) are reported as 'error' and then
 *   stop the dialer or retry, per `refusalAction` (default: defaultRefusalAction).
 * - Liveness: see Liveness; a dead link is closed with 1001 (terminated with 'transport-ping').
 * - `stop()` closes the link and stays offline until `start()`; `destroy()` for good. Nothing
 *   is dialled before `start()`. No timer is left while stopped.
 */
export class Dialer extends ObservableV2<DialerEvents> {
  private stateValue: DialState = 'offline';
  private current: DialAttempt | null = null;
  /** Why the dialer is not dialling: not started or stopped, a refusal that stops it, or destroyed. */
  private stopped: 'user' | 'fatal' | 'closed' | null = 'user';
  private offline: boolean;
  private readonly unwatchNetwork: (() => void) | null;
  private cancelRetry: (() => void) | null = null;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private urlIndex = 0;
  /** Failed attempts in a row since the round began (start, online, or `healthy`). */
  private failuresInRound = 0;
  private connections = 0;
  private pings = 0;

  constructor(private readonly options: DialerOptions) {
    super();
    if (options.urls.length === 0) throw new CapsyncError('internal', 'a dialer needs at least one URL');
    // Looked up per call, not captured: tests stub Math.random after modules load.
    this.random = options.random ?? (() => Math.random());
    this.backoff = new Backoff(options.backoff, this.random);
    this.later = laterFor(options.unrefTimers);
    this.offline = options.network?.offline ?? false;
    this.unwatchNetwork = options.network?.watch(this.onOnline, this.onOffline) ?? null;
  }

  get state(): DialState {
    return this.stateValue;
  }

  /** The base URL of the link (open or connecting), or the one the next attempt goes to. */
  get currentUrl(): string {
    return this.options.urls[this.urlIndex]!;
  }

  /** Starts (or restarts after `stop` or a refusal that stopped it) dialling, the current URL first. */
  start(): void {
    if (this.stopped === 'closed') return;
    this.stopped = null;
    this.newRound();
    this.dialNow();
  }

  /** Closes the link (1000 `reason`) and stays offline until `start`. */
  stop(reason = 'disconnected'): void {
    if (this.stopped === 'closed') return;
    this.stopped = 'user';
    this.endCurrent(CloseCode.Normal, reason);
  }

  /** The link works (the other side answered): the next failure starts a new round, backoff afresh. */
  healthy(): void {
    this.newRound();
  }

  override destroy(reason = 'closed'): void {
    if (this.stopped === 'closed') return;
    this.stopped = 'closed';
    this.endCurrent(CloseCode.Normal, reason);
    this.unwatchNetwork?.();
    super.destroy();
  }

  // ---- dialling ----

  private dialNow(): void {
    this.cancelRetry?.();
    this.cancelRetry = null;
    if (this.current || this.stopped || this.offline) return;
    const a = new DialAttempt(this.currentUrl, this.options, this.owner, this.later, () => ++this.pings);
    this.current = a;
    this.setState('connecting');
    a.begin();
  }

  /** What the current attempt reports (an attempt that is not current any more was abandoned or dropped). */
  private readonly owner: AttemptOwner = {
    failed: (a, err, failure) => {
      if (this.current !== a) return;
      this.current = null;
      this.emit('error', [err]);
      this.retryLater(failure);
    },
    open: (a, hello) => {
      this.setState('open');
      this.emit('open', [{ channel: a.view, hello, url: a.url, connection: ++this.connections }]);
    },
    ended: (a, code, reason, refusal) => this.end(a, code, reason, refusal ?? refusalFor(code, reason)),
  };

  // ---- ending ----

  private endCurrent(code: number, reason: string): void {
    this.cancelRetry?.();
    this.cancelRetry = null;
    const a = this.current;
    if (a?.transport) a.drop(code, reason, 'close');
    else {
      a?.abandon();
      this.current = null;
      this.setState('offline');
    }
  }

  /** The link or attempt is over: report it, then dial again unless the refusal policy says stop. */
  private end(a: DialAttempt, code: number, reason: string, refusal: CapsyncError | null): void {
    this.current = null;
    this.setState('offline');
    a.view.events.close(code, reason);
    this.emit('close', [{ code, reason, url: a.url, opened: a.stage === 'open' }]);
    // A listener restarted it (start()): the new attempt is under way.
    if (this.current) return;
    if (!refusal) {
      this.retryLater('unreachable', code);
      return;
    }
    const action = this.options.refusalAction?.(code, refusal, reason) ?? defaultRefusalAction(code, refusal, this.options.retryUnauthorized);
    if (action !== 'handled') this.emit('error', [refusal]);
    if (action === 'stop') {
      this.stopped ??= 'fatal';
      return;
    }
    if (action === 'retry-slowly') this.backoff.saturate();
    this.retryLater('refused', code);
  }

  private retryLater(failure: Failure, code?: number): void {
    if (this.stopped || this.cancelRetry || this.current) return;
    this.setState('offline');
    // Our own network is down, not the other side: keep the URL; 'online' dials it.
    if (this.offline) return;
    const delay = Math.max(this.nextAttempt(failure), (code !== undefined && this.options.minDelayAfter?.[code]) || 0);
    this.cancelRetry = this.later(delay, () => {
      this.cancelRetry = null;
      this.dialNow();
    });
  }

  /** Moves to the URL of the next attempt and returns how long to wait for it (class comment). */
  private nextAttempt(failure: Failure): number {
    // A failure on this side says nothing about the other: same URL, usual backoff.
    if (failure === 'local') return this.backoff.next();
    const urls = this.options.urls.length;
    this.urlIndex = (this.urlIndex + 1) % urls;
    this.failuresInRound++;
    if (failure === 'unreachable' && this.failuresInRound < urls) {
      // Another URL may well be up: no need to wait out the backoff, only to spread out.
      return Math.floor(this.random() * this.options.backoff.baseMs);
    }
    this.failuresInRound = 0;
    return this.backoff.next();
  }

  private newRound(): void {
    this.failuresInRound = 0;
    this.backoff.reset();
  }

  private readonly later: Later;

  // ---- the network ----

  private readonly onOnline = (): void => {
    this.offline = false;
    this.newRound();
    this.dialNow();
  };

  private readonly onOffline = (): void => {
    this.offline = true;
    this.endCurrent(CloseCode.GoingAway, 'unavailable: the network went offline');
  };

  private setState(state: DialState): void {
    if (state === this.stateValue) return;
    this.stateValue = state;
    this.emit('state', [state]);
  }
}
