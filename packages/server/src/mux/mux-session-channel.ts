import { SessionChannel, type HelloMessage, type SessionTransport } from '@capsync/core';
import type { AccountedChannel, ServedChannel } from '../relay/accounted-channel.js';
import type { SendBuffer } from '../relay/send-buffer.js';

/**
 * One document session of a multiplexed socket, as the relay serves it (ServedChannel): a
 * SessionChannel whose accounting is its socket's. Its sends go through the socket's one
 * SendBuffer, so a reader that stops reading is one slow consumer (the socket, 4429), not one per
 * document, and its full-state answers wait for the socket's room in the relay's budget.
 */
export class MuxSessionChannel extends SessionChannel implements ServedChannel {
  readonly outbound: SendBuffer;

  constructor(
    sid: number,
    transport: SessionTransport,
    hello: HelloMessage,
    private readonly socket: AccountedChannel,
  ) {
    super(sid, transport, hello);
    this.outbound = socket.outbound;
  }

  hasRoom(wake: () => void): boolean {
    return this.socket.hasRoom(wake);
  }

  // The socket checked the frame (binary, within the size limit) before routing it here.
  override received(data: Uint8Array, _isBinary = true): void {
    super.received(data);
  }
}
