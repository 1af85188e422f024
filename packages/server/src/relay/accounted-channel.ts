import { ABNORMAL_CLOSURE, HeldEvents, ProtocolError, type Channel, type ChannelHandler } from '@capsync/core';
import { SendBuffer, type OutboundSocket, type SendBufferOptions } from './send-buffer.js';

/**
 * The part of a WebSocket the relay uses, so the relay core knows nothing of `ws` or http.
 * `bufferedAmount` is the number of bytes queued but not yet sent (see OutboundSocket).
 */
export interface RelaySocket extends OutboundSocket {
  close(code: number, reason: string): void;
  /** Drops the connection at once, without a closing handshake. */
  terminate(): void;
}

/**
 * A channel the relay serves one document on (RelayConnection): a socket of its own
 * (AccountedChannel) or one session of a multiplexed socket (MuxSessionChannel), whose sends
 * go through that socket's SendBuffer.
 */
export interface ServedChannel extends Channel {
  /** The SendBuffer its sends go through (shared by every session of a multiplexed socket). */
  readonly outbound: SendBuffer;
  /** Whether a full-state answer may be sent now (see SendBuffer.hasRoom). */
  hasRoom(wake: () => void): boolean;
  /** The endpoint received one frame of it. */
  received(data: Uint8Array, isBinary: boolean): void;
  /** Its transport closed, by either side. */
  transportClosed(code?: number, reason?: string): void;
}

/**
 * The Channel of a socket the relay serves or dialled (see Channel for the contract). Every send
 * goes through the connection's SendBuffer, so a consumer that stops reading is reported as a
 * `slow-consumer` error (4429) and its unsent bytes count against the relay-wide budget
 * (UnsentBudget, when given one); `hasRoom` lets full-state answers wait for that budget (CoalescedReply).
 *
 * Whoever owns the socket feeds it (the relay's endpoint, or a PeerLink for the socket it
 * dialled): `received` for every frame (a text frame is a `text-frame` error, never a message)
 * and `transportClosed` once the socket closed. It registers no listener of its own on the
 * socket and allocates nothing per message it sends (the fan-out path).
 */
export class AccountedChannel implements ServedChannel {
  /** Every message sent goes through it (slow consumers are given up on, whatever they asked for). */
  readonly outbound: SendBuffer;
  private readonly events = new HeldEvents();

  constructor(
    private readonly socket: RelaySocket,
    options: SendBufferOptions,
  ) {
    this.outbound = new SendBuffer(socket, options, (err) => this.events.error(err));
  }

  send(bytes: Uint8Array, onWritten?: () => void): void {
    this.outbound.send(bytes, onWritten);
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  /** Whether a full-state answer may be sent now (see SendBuffer.hasRoom). */
  hasRoom(wake: () => void): boolean {
    return this.outbound.hasRoom(wake);
  }

  close(code: number, reason: string): void {
    this.outbound.stop();
    this.socket.close(code, reason);
  }

  /** Drops the socket at once; the handler hears the close (1006) now, not when the socket reports it. */
  terminate(): void {
    this.outbound.stop();
    this.socket.terminate();
    this.events.close(ABNORMAL_CLOSURE, '');
  }

  attach(handler: ChannelHandler): void {
    this.events.attach(handler);
  }

  /** The endpoint received one frame. */
  received(data: Uint8Array, isBinary: boolean): void {
    if (isBinary) this.events.message(data);
    else this.events.error(new ProtocolError('text-frame', 'text frames are not supported; send binary frames'));
  }

  /** The socket closed, by either side (the endpoint does not pass the code: nothing needs it yet). */
  transportClosed(code: number = ABNORMAL_CLOSURE, reason = ''): void {
    this.outbound.stop();
    this.events.close(code, reason);
  }
}
