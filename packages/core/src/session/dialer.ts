import { ObservableV2 } from 'lib0/observable';
import { AuthError, CapsyncError } from '../errors.js';
import { CloseCode, closeCodeFor, closeReasonFor } from '../protocol/close-codes.js';
import type { HelloMessage } from '../protocol/message-types.js';
import { decodeMessage, encodeMessage, isCapsyncFrame } from '../protocol/messages.js';
import { Backoff } from './backoff.js';
import { ABNORMAL_CLOSURE, type ChannelHandler } from './channel.js';
import { CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX, type DialState, type DialTransport, type DialedChannel, type DialerEvents, type DialerOptions } from './dialer-types.js';
import { HeldEvents } from './held-events.js';
import { checkProtocolVersion } from './hello.js';
import { LivenessWatch, type Later } from './liveness.js';
import { defaultRefusalAction, refusalFor } from './refusals.js';

export type { Liveness } from './liveness.js';
export * from './dialer-types.js';

/**
 * Why an attempt or link ended, for the next URL and delay: 'unreachable' (connect error or
 * timeout, liveness death, a close that is not a refusal), 'refused' (a retryable refusal), or
 * 'local' (this side failed before any relay was involved: the credential function threw).
 */
type Failure = 'unreachable' | 'refused' | 'local';

/** One attempt, and the link it becomes. */
class Attempt {
  transport: DialTransport | null = null;
  stage: 'credential' | 'connecting' | 'hello' | 'open' = 'credential';
  /** We closed it: later events of its transport are ignored. */
  dropped = false;
  cancelHandshake: (() => void) | null = null;
  watch: LivenessWatch | null = null;
  readonly view: LinkChannel;

  constructor(
    readonly url: string,
    end: (a: Attempt, code: number, reason: string, how: 'close' | 'terminate') => void,
  ) {
    this.view = new LinkChannel(this, (code, reason, how) => end(this, code, reason, how));
  }
}

/**
 * The one outbound link of capsync (client documents and locks; relay peers and the lock
 * authority, later): dials one of `urls`, says hello, watches liveness, and dials again with
 * the one Backoff. Transport-agnostic: `connect` makes the channel (a WebSocket, a memory pair).
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
  private current: Attempt | null = null;
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
    const a = new Attempt(this.currentUrl, this.drop);
    this.current = a;
    this.setState('connecting');
    let credential: string | undefined | Promise<string | undefined>;
    try {
      credential = this.options.credential?.();
    } catch (err) {
      this.credentialFailed(a, err);
      return;
    }
    if (isPromise(credential)) credential.then((c) => this.connect(a, c), (err: unknown) => this.credentialFailed(a, err));
    else this.connect(a, credential);
  }

  private credentialFailed(a: Attempt, err: unknown): void {
    if (this.current !== a) return;
    this.current = null;
    this.emit('error', [new AuthError('unauthorized', `the credential function failed: ${(err as Error)?.message ?? err}`, { cause: err })]);
    this.retryLater('local');
  }

  private connect(a: Attempt, credential: string | undefined): void {
    // stop(), destroy() or the network going away happened while the credential was fetched.
    if (this.current !== a) return;
    a.stage = 'connecting';
    const url = `${a.url.replace(/\/+$/, '')}/${this.options.path}`;
    let openedEarly = false;
    try {
      const protocols = credential ? [CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX + credential] : [CAPSYNC_PROTOCOL];
      a.transport = this.options.connect(url, protocols, () => (a.transport ? this.opened(a) : (openedEarly = true)));
      if (this.options.liveness.kind === 'transport-ping' && !a.transport.ping) {
        a.transport.terminate();
        throw new CapsyncError('internal', "liveness 'transport-ping' needs a transport with ping()");
      }
    } catch (err) {
      this.current = null;
      this.emit('error', [new CapsyncError('unavailable', `cannot connect to ${a.url}: ${(err as Error)?.message ?? err}`, { cause: err })]);
      this.retryLater('unreachable');
      return;
    }
    const handler: ChannelHandler = {
      message: (bytes) => this.frame(a, bytes),
      close: (code, reason) => {
        if (this.current === a && !a.dropped) this.end(a, code, reason);
      },
      error: (err) => {
        if (this.current === a && !a.dropped) a.view.events.error(err);
      },
    };
    a.transport.attach(handler);
    if (this.current !== a) return; // it closed at once (held events)
    // A connect that hangs (dead network, black-holed SYN) counts as a failed attempt.
    a.cancelHandshake = this.later(this.options.handshakeTimeoutMs, () =>
      this.drop(a, CloseCode.GoingAway, 'unavailable: no answer within the handshake timeout', 'close'),
    );
    if (openedEarly) this.opened(a);
  }

  private opened(a: Attempt): void {
    if (this.current !== a || a.dropped || a.stage !== 'connecting') return;
    const hello = this.options.hello;
    a.transport!.send(this.own(encodeMessage(typeof hello === 'function' ? hello() : hello)));
    if (this.options.expectHello) a.stage = 'hello';
    else this.established(a, null);
  }

  private established(a: Attempt, hello: HelloMessage | null): void {
    a.cancelHandshake?.();
    a.cancelHandshake = null;
    a.stage = 'open';
    const liveness = this.options.liveness;
    if (liveness.kind !== 'none') {
      const probe = liveness.kind === 'app-ping' ? () => a.transport!.send(this.own(encodeMessage({ type: 'ping', id: ++this.pings }))) : () => this.transportPing(a);
      const dead = () =>
        this.drop(a, CloseCode.GoingAway, 'unavailable: no answer within the heartbeat timeout', liveness.kind === 'app-ping' ? 'close' : 'terminate');
      a.watch = new LivenessWatch(liveness.intervalMs, liveness.timeoutMs ?? liveness.intervalMs, probe, dead, this.later);
    }
    this.setState('open');
    this.emit('open', [{ channel: a.view, hello, url: a.url, connection: ++this.connections }]);
  }

  private transportPing(a: Attempt): void {
    a.transport!.ping!(() => {
      if (this.current === a) a.watch?.heard();
    });
  }

  private frame(a: Attempt, bytes: Uint8Array): void {
    if (this.current !== a || a.dropped) return;
    a.watch?.heard();
    const control = this.options.control ? this.options.control.unwrap(bytes) : bytes;
    if (control && this.options.liveness.kind === 'app-ping' && isCapsyncFrame(control, 'pong')) return;
    if (control && isCapsyncFrame(control, 'hello') && !this.hello(a, control)) return;
    a.view.events.message(bytes);
  }

  /** One of the dialer's own messages, framed for the link (see DialerOptions.control). */
  private own(message: Uint8Array): Uint8Array {
    return this.options.control ? this.options.control.wrap(message) : message;
  }

  /** Checks a hello (version; the awaited one with `expectHello`); returns true to pass it on. */
  private hello(a: Attempt, bytes: Uint8Array): boolean {
    let hello: HelloMessage;
    try {
      hello = decodeMessage(bytes) as HelloMessage;
    } catch (err) {
      // Passed on, the owner's decoder reports it; while we wait for it, it refuses the link.
      if (a.stage !== 'hello') return true;
      this.drop(a, CloseCode.BadMessage, closeReasonFor('bad-message', (err as Error).message), 'close');
      return false;
    }
    try {
      checkProtocolVersion(hello.protocolVersion);
    } catch (err) {
      // Nothing we say would be understood: refused with 4426, which the default policy stops on.
      this.drop(a, CloseCode.ProtocolVersion, closeReasonFor('protocol-version', (err as Error).message), 'close');
      return false;
    }
    if (a.stage !== 'hello') return true;
    const refusal = this.options.expectHello!(hello);
    if (!refusal) {
      this.established(a, hello);
      return false;
    }
    const code = closeCodeFor(refusal.code);
    const reason = closeReasonFor(refusal.code, refusal.message);
    a.dropped = true;
    a.transport!.close(code, reason);
    this.end(a, code, reason, refusal);
    return false;
  }

  // ---- ending ----

  /** We end the link (or attempt) `a`: closes its transport, then reports as for a close. */
  private readonly drop = (a: Attempt, code: number, reason: string, how: 'close' | 'terminate'): void => {
    if (this.current !== a || a.dropped) return;
    a.dropped = true;
    if (how === 'terminate') a.transport?.terminate();
    else a.transport?.close(code, reason);
    this.end(a, how === 'terminate' ? ABNORMAL_CLOSURE : code, reason);
  };

  private endCurrent(code: number, reason: string): void {
    this.cancelRetry?.();
    this.cancelRetry = null;
    const a = this.current;
    if (a?.transport) this.drop(a, code, reason, 'close');
    else {
      this.current = null;
      this.setState('offline');
    }
  }

  /** The link or attempt is over: report it, then dial again unless the refusal policy says stop. */
  private end(a: Attempt, code: number, reason: string, refusal = refusalFor(code, reason)): void {
    this.current = null;
    a.cancelHandshake?.();
    a.watch?.stop();
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

  private readonly later: Later = (ms, fn) => {
    const t = setTimeout(fn, ms);
    if (this.options.unrefTimers) (t as { unref?: () => void }).unref?.();
    return () => clearTimeout(t);
  };

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

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function';
}

/** The channel of one link, handed out in 'open': frames pass through; close ends the link. */
class LinkChannel implements DialedChannel {
  readonly events = new HeldEvents();

  constructor(
    private readonly a: Attempt,
    private readonly end: (code: number, reason: string, how: 'close' | 'terminate') => void,
  ) {}

  get writable(): boolean {
    return !this.events.closed && this.a.stage === 'open' && this.a.transport?.writable !== false;
  }

  send(bytes: Uint8Array, onWritten?: () => void): void {
    if (!this.events.closed) this.a.transport?.send(bytes, onWritten);
  }

  get bufferedAmount(): number {
    return this.a.transport?.bufferedAmount ?? 0;
  }

  close(code: number, reason: string): void {
    this.end(code, reason, 'close');
  }

  terminate(): void {
    this.end(ABNORMAL_CLOSURE, '', 'terminate');
  }

  attach(handler: ChannelHandler): void {
    this.events.attach(handler);
  }
}
