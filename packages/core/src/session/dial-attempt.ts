import { AuthError, CapsyncError, UnavailableError } from '../errors.js';
import { CloseCode, closeCodeFor, closeReasonFor } from '../protocol/close-codes.js';
import type { HelloMessage } from '../protocol/message-types.js';
import { decodeMessage, encodeMessage, isCapsyncFrame } from '../protocol/messages.js';
import { ABNORMAL_CLOSURE, type ChannelHandler } from './channel.js';
import { CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX, type AttemptOptions, type DialTransport, type DialedChannel, type DialedLink } from './dialer-types.js';
import { HeldEvents } from './held-events.js';
import { checkProtocolVersion } from './hello.js';
import { LivenessWatch, type Later } from './liveness.js';
import { refusalFor } from './refusals.js';
import { TokenRefresher } from './token-refresh.js';
import { TOKEN_REFRESH_CAPABILITY } from '../protocol/message-types.js';

/**
 * What one attempt tells its owner (the Dialer's retry loop, or `dialOnce`). Each attempt
 * reports exactly one of `failed` and `ended`, once; `open` at most once, before `ended`.
 */
export interface AttemptOwner {
  /** It failed before any transport: the credential function ('local') or `connect` threw ('unreachable'). */
  failed(a: DialAttempt, err: CapsyncError, failure: 'local' | 'unreachable'): void;
  /** The handshake is done: our hello went out (and, with `expectHello`, theirs came in). */
  open(a: DialAttempt, hello: HelloMessage | null): void;
  /**
   * The attempt or link ended, whoever closed it. `refusal` is set when this side refused the
   * other's hello (`expectHello`); otherwise the owner reads the close code (refusals.ts).
   */
  ended(a: DialAttempt, code: number, reason: string, refusal?: CapsyncError): void;
}

/**
 * One attempt of a dialled link, and the link it becomes: asks the credential, connects, says
 * hello, waits for the other side's hello when asked to, within `handshakeTimeoutMs`, then
 * watches liveness and passes the link's frames to `view` (the channel handed out in 'open').
 * The contract is the Dialer's (dialer.ts), for one attempt; what comes after is the owner's.
 */
export class DialAttempt {
  transport: DialTransport | null = null;
  stage: 'credential' | 'connecting' | 'hello' | 'open' = 'credential';
  readonly view: LinkChannel;
  /** Reported to the owner, or abandoned: later events of its transport are ignored. */
  private over = false;
  private cancelHandshake: (() => void) | null = null;
  private watch: LivenessWatch | null = null;
  /** The credential this link was opened with, and what refreshes it (see `refreshCredential`). */
  private credential: string | undefined;
  private refresher: TokenRefresher | null = null;

  constructor(
    readonly url: string,
    private readonly o: AttemptOptions,
    private readonly owner: AttemptOwner,
    private readonly later: Later,
    private readonly nextPingId: () => number,
  ) {
    this.view = new LinkChannel(this, (code, reason, how) => this.drop(code, reason, how));
  }

  /** Asks the credential, then connects. */
  begin(): void {
    let credential: string | undefined | Promise<string | undefined>;
    try {
      credential = this.o.credential?.();
    } catch (err) {
      this.credentialFailed(err);
      return;
    }
    if (isPromise(credential)) credential.then((c) => this.connect(c), (err: unknown) => this.credentialFailed(err));
    else this.connect(credential);
  }

  /** Forgets an attempt that has no transport yet (the credential is being fetched): nothing is reported. */
  abandon(): void {
    this.over = true;
  }

  /** We end the attempt or link: closes its transport, then reports as for a close. */
  drop(code: number, reason: string, how: 'close' | 'terminate', refusal?: CapsyncError): void {
    if (this.over) return;
    this.over = true;
    if (how === 'terminate') this.transport?.terminate();
    else this.transport?.close(code, reason);
    this.ended(how === 'terminate' ? ABNORMAL_CLOSURE : code, reason, refusal);
  }

  private credentialFailed(err: unknown): void {
    if (this.over) return;
    this.over = true;
    this.owner.failed(this, new AuthError('unauthorized', `the credential function failed: ${(err as Error)?.message ?? err}`, { cause: err }), 'local');
  }

  private connect(credential: string | undefined): void {
    // Stopped, destroyed or the network went away while the credential was fetched.
    if (this.over) return;
    this.stage = 'connecting';
    this.credential = credential;
    const url = `${this.url.replace(/\/+$/, '')}/${this.o.path}`;
    let openedEarly = false;
    try {
      const protocols = credential ? [CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX + credential] : [CAPSYNC_PROTOCOL];
      this.transport = this.o.connect(url, protocols, () => (this.transport ? this.opened() : (openedEarly = true)));
      if (this.o.liveness.kind === 'transport-ping' && !this.transport.ping) {
        this.transport.terminate();
        throw new CapsyncError('internal', "liveness 'transport-ping' needs a transport with ping()");
      }
    } catch (err) {
      this.over = true;
      this.owner.failed(this, new CapsyncError('unavailable', `cannot connect to ${this.url}: ${(err as Error)?.message ?? err}`, { cause: err }), 'unreachable');
      return;
    }
    const handler: ChannelHandler = {
      message: (bytes) => this.frame(bytes),
      close: (code, reason) => {
        if (this.over) return;
        this.over = true;
        this.ended(code, reason);
      },
      error: (err) => {
        if (!this.over) this.view.events.error(err);
      },
    };
    this.transport.attach(handler);
    if (this.over) return; // it closed at once (held events)
    // A connect that hangs (dead network, black-holed SYN) counts as a failed attempt.
    this.cancelHandshake = this.later(this.o.handshakeTimeoutMs, () =>
      this.drop(CloseCode.GoingAway, 'unavailable: no answer within the handshake timeout', 'close'),
    );
    if (openedEarly) this.opened();
  }

  private opened(): void {
    if (this.over || this.stage !== 'connecting') return;
    const hello = this.o.hello;
    this.transport!.send(this.own(encodeMessage(typeof hello === 'function' ? hello() : hello)));
    if (this.o.expectHello) this.stage = 'hello';
    else this.established(null);
  }

  private established(hello: HelloMessage | null): void {
    this.cancelHandshake?.();
    this.cancelHandshake = null;
    this.stage = 'open';
    const liveness = this.o.liveness;
    if (liveness.kind !== 'none') {
      const probe = liveness.kind === 'app-ping' ? () => this.transport!.send(this.own(encodeMessage({ type: 'ping', id: this.nextPingId() }))) : () => this.transportPing();
      const dead = () =>
        this.drop(CloseCode.GoingAway, 'unavailable: no answer within the heartbeat timeout', liveness.kind === 'app-ping' ? 'close' : 'terminate');
      this.watch = new LivenessWatch(liveness.intervalMs, liveness.timeoutMs ?? liveness.intervalMs, probe, dead, this.later);
    }
    this.owner.open(this, hello);
  }

  private transportPing(): void {
    this.transport!.ping!(() => {
      if (!this.over) this.watch?.heard();
    });
  }

  private frame(bytes: Uint8Array): void {
    if (this.over) return;
    this.watch?.heard();
    const control = this.o.control ? this.o.control.unwrap(bytes) : bytes;
    if (control && this.o.liveness.kind === 'app-ping' && isCapsyncFrame(control, 'pong')) return;
    if (control && isCapsyncFrame(control, 'hello') && !this.hello(control)) return;
    this.view.events.message(bytes);
  }

  /** One of the dialer's own messages, framed for the link (see DialerOptions.control). */
  private own(message: Uint8Array): Uint8Array {
    return this.o.control ? this.o.control.wrap(message) : message;
  }

  /** Checks a hello (version; the awaited one with `expectHello`); returns true to pass it on. */
  private hello(bytes: Uint8Array): boolean {
    let hello: HelloMessage;
    try {
      hello = decodeMessage(bytes) as HelloMessage;
    } catch (err) {
      // Passed on, the owner's decoder reports it; while we wait for it, it refuses the link.
      if (this.stage !== 'hello') return true;
      this.drop(CloseCode.BadMessage, closeReasonFor('bad-message', (err as Error).message), 'close');
      return false;
    }
    try {
      checkProtocolVersion(hello.protocolVersion);
    } catch (err) {
      // Nothing we say would be understood: refused with 4426, which the default policy stops on.
      this.drop(CloseCode.ProtocolVersion, closeReasonFor('protocol-version', (err as Error).message), 'close');
      return false;
    }
    this.startRefresh(hello);
    if (this.stage !== 'hello') return true;
    const refusal = this.o.expectHello!(hello);
    if (!refusal) {
      this.established(hello);
      return false;
    }
    this.drop(closeCodeFor(refusal.code), closeReasonFor(refusal.code, refusal.message), 'close', refusal);
    return false;
  }

  /**
   * The other side takes fresh tokens on this link (its hello lists TOKEN_REFRESH_CAPABILITY):
   * with `refreshCredential`, the credential is refreshed before it expires (TokenRefresher), on
   * the link. Without the capability (an older relay) the token runs out, the relay closes (4401)
   * and the dialer reconnects with a fresh one, as before.
   */
  private startRefresh(hello: HelloMessage): void {
    if (!this.o.refreshCredential || this.refresher || !this.credential || !this.o.credential) return;
    if (!hello.capabilities.includes(TOKEN_REFRESH_CAPABILITY)) return;
    this.refresher = new TokenRefresher(this.credential, this.o.credential, (token) => {
      if (!this.over && this.stage === 'open') this.transport!.send(this.own(encodeMessage({ type: 'token-refresh', token })));
    }, this.later);
  }

  private ended(code: number, reason: string, refusal?: CapsyncError): void {
    this.refresher?.stop();
    this.cancelHandshake?.();
    this.cancelHandshake = null;
    this.watch?.stop();
    this.owner.ended(this, code, reason, refusal);
  }
}

/** A one-shot dial (see `dialOnce`): the link once open; `cancel` gives the attempt up, or closes the link. */
export interface OneDial {
  readonly link: Promise<DialedLink>;
  cancel(reason: string): void;
}

/**
 * One attempt to `url`, no retry (a request that has a deadline of its own, such as a fenced
 * write forwarded to the lock authority): `link` resolves once the handshake is done (as the
 * Dialer's 'open'), or rejects with why it failed: a refusal (typed, refusals.ts, or the
 * `expectHello` one), else UnavailableError. `cancel` before then rejects it with
 * UnavailableError(`reason`). Once open, the link is the caller's: its channel reports its end.
 */
export function dialOnce(options: AttemptOptions & { url: string; unrefTimers?: boolean }): OneDial {
  let resolve!: (link: DialedLink) => void;
  let reject!: (err: CapsyncError) => void;
  const link = new Promise<DialedLink>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  let settled = false;
  const settle = (fn: () => void): void => {
    if (settled) return;
    settled = true;
    fn();
  };
  let pings = 0;
  const owner: AttemptOwner = {
    failed: (_a, err) => settle(() => reject(err)),
    open: (a, hello) => settle(() => resolve({ channel: a.view, hello, url: a.url, connection: 1 })),
    ended: (a, code, reason, refusal) => {
      a.view.events.close(code, reason);
      settle(() => reject(refusal ?? refusalFor(code, reason) ?? new UnavailableError(`${a.url} closed the link (${code} ${reason})`.trim())));
    },
  };
  const attempt = new DialAttempt(options.url, options, owner, laterFor(options.unrefTimers), () => ++pings);
  attempt.begin();
  return {
    link,
    cancel: (reason) => {
      settle(() => reject(new UnavailableError(reason)));
      if (attempt.transport) attempt.drop(CloseCode.GoingAway, reason, 'close');
      else attempt.abandon();
    },
  };
}

/** setTimeout as a Later; `unref` keeps a Node process from staying up for it. */
export function laterFor(unref: boolean | undefined): Later {
  return (ms, fn) => {
    const t = setTimeout(fn, ms);
    if (unref) (t as { unref?: () => void }).unref?.();
    return () => clearTimeout(t);
  };
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function';
}

/** The channel of one link, handed out in 'open': frames pass through; close ends the link. */
class LinkChannel implements DialedChannel {
  readonly events = new HeldEvents();

  constructor(
    private readonly a: DialAttempt,
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
