import type { CapsyncError } from '../errors.js';
import type { HelloMessage } from '../protocol/message-types.js';

/**
 * One ordered, message-framed, bidirectional link between two replicas: a WebSocket, one
 * session of a multiplexed socket, or an in-memory pair (`channelPair`). Document sessions,
 * lock connections and relay links are written against this interface only, so the relay,
 * the mesh and the client can run together in one process over memory channels.
 *
 * Contract (checked by `channelConformance`, which every implementation runs):
 * - Messages arrive whole and in send order, each exactly once, until the channel closes.
 * - `send` never throws. After `close`/`terminate` (or the close event) it is a no-op and the
 *   message is dropped. `onWritten` runs once the bytes have left this process's buffer, or
 *   once the channel died with them still in it; it never runs for a dropped send.
 * - `bufferedAmount`: bytes accepted by `send` and not yet written out (0 when the transport
 *   cannot tell).
 * - `handler.close(code, reason)` fires exactly once per side, whoever closed; no `message`
 *   is delivered after it. `close(code, reason)` on one side reports that code and reason to
 *   both sides' handlers (the other side's after it received every message sent before the
 *   close). `terminate()` drops the link at once, with no closing handshake: both sides see
 *   1006 (abnormal closure).
 * - Protocol violations of the transport (a text frame, a frame over a size limit) arrive as
 *   `handler.error(CapsyncError)`, never as a message; the channel stays open unless the
 *   transport closes it.
 * - `attach` sets the one handler. Messages (and a close) that arrive before it are held
 *   and delivered, in order, on attach.
 */
export interface Channel {
  send(bytes: Uint8Array, onWritten?: () => void): void;
  readonly bufferedAmount: number;
  close(code: number, reason: string): void;
  /** Drops the link at once, with no closing handshake (a slow consumer, a dead link). */
  terminate(): void;
  attach(handler: ChannelHandler): void;
  /**
   * Set on a session of a multiplexed socket: the other side's hello, said once on the socket's
   * control session (its version already checked), with the session's own capabilities added.
   * A session over this channel takes it as received before any message and does not answer
   * it (the socket's hello was answered); a hello sent on the session itself is a second one.
   */
  readonly hello?: HelloMessage | undefined;
}

/** What a channel's owner receives. */
export interface ChannelHandler {
  message(bytes: Uint8Array): void;
  close(code: number, reason: string): void;
  error(err: CapsyncError): void;
}

/** Close code of a link that died without a closing handshake (RFC 6455 1006). */
export const ABNORMAL_CLOSURE = 1006;
