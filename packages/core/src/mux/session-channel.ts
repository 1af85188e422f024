import type { HelloMessage } from '../protocol/message-types.js';
import { encodeMuxFrame } from '../protocol/mux-frame.js';
import { ABNORMAL_CLOSURE, type Channel, type ChannelHandler } from '../session/channel.js';
import { HeldEvents } from '../session/held-events.js';

/**
 * What a session's channel needs of the multiplexed socket it rides on (MuxSessions).
 */
export interface SessionTransport {
  /** Sends one framed message of a session through the socket (and the socket's accounting). */
  sendFrame(frame: Uint8Array, onWritten?: () => void): void;
  /** The socket's unsent bytes: its sessions share one buffer. */
  readonly bufferedAmount: number;
  /** Session `sid` ended on this side: tell the other side (`session-close`) and forget it. */
  sessionClosed(sid: number, code: number, reason: string): void;
}

/**
 * One session of a multiplexed socket as a Channel (see Channel for the contract), so a
 * DocSession runs on it exactly as on a socket of its own. `send` frames the message with the
 * sid; `close` and `terminate` end this session only (a `session-close` to the other side,
 * carrying 1006 for a terminate); `bufferedAmount` is the socket's, which all its sessions fill.
 * The socket feeds it `received` for each of its frames and `transportClosed` once the other
 * side closed the session or the socket went away.
 */
export class SessionChannel implements Channel {
  private readonly events = new HeldEvents();
  private ended = false;

  constructor(
    readonly sid: number,
    private readonly transport: SessionTransport,
    /** The other side's hello for this session (see Channel.hello). */
    readonly hello?: HelloMessage | undefined,
  ) {}

  /** True once the session ended, on either side. */
  get closed(): boolean {
    return this.ended;
  }

  send(bytes: Uint8Array, onWritten?: () => void): void {
    if (this.ended) return;
    this.transport.sendFrame(encodeMuxFrame(this.sid, bytes), onWritten);
  }

  get bufferedAmount(): number {
    return this.transport.bufferedAmount;
  }

  close(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    // Ordered behind every frame sent before it, on the same socket.
    this.transport.sessionClosed(this.sid, code, reason);
    this.events.close(code, reason);
  }

  /** Ends the session at once. The socket is shared, so the other side is still told (1006). */
  terminate(): void {
    this.close(ABNORMAL_CLOSURE, '');
  }

  attach(handler: ChannelHandler): void {
    this.events.attach(handler);
  }

  /** The socket received one message of this session. */
  received(bytes: Uint8Array): void {
    if (!this.ended) this.events.message(bytes);
  }

  /** The other side closed this session, or the socket closed (then with the socket's code). */
  transportClosed(code: number = ABNORMAL_CLOSURE, reason = ''): void {
    if (this.ended) return;
    this.ended = true;
    this.events.close(code, reason);
  }
}
