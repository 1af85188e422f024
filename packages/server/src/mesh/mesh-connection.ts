import { CapsyncError, CloseCode, RELAY_CAPABILITY, checkProtocolVersion, closeCodeFor, closeReasonFor, decodeMessage, encodeMessage, type Message } from '@capsync/core';
import type { RelaySocket } from '../relay/connection.js';
import { SendBuffer, type SendBufferOptions } from '../relay/send-buffer.js';
import { relayHello } from './peer-socket.js';

/** Path of a relay's mesh endpoint: the control link peers keep open to see it is alive. */
export const MESH_PATH = '.capsync/mesh';

/**
 * The relay side of a peer's control link (see PeerEndpoint): answers the peer's hello with
 * this relay's id. Liveness is WebSocket ping/pong, which `ws` answers by itself. Only relay
 * credentials may open it; anything but a relay hello closes it. Replies go through the
 * send-buffer accounting like every connection's.
 */
export class MeshConnection {
  private closed = false;
  readonly outbound: SendBuffer;

  constructor(
    private readonly socket: RelaySocket,
    private readonly relayId: string,
    outbound: SendBufferOptions,
  ) {
    this.outbound = new SendBuffer(socket, outbound, (err) => {
      this.fail(err);
      setTimeout(() => socket.terminate(), 1000).unref();
    });
  }

  receive(data: Uint8Array): void {
    if (this.closed) return;
    try {
      const msg = decodeMessage(data);
      if (msg.type === 'hello' && msg.capabilities.includes(RELAY_CAPABILITY)) {
        checkProtocolVersion(msg.protocolVersion);
        this.send(relayHello(this.relayId));
        return;
      }
      if (msg.type === 'ping') {
        this.send({ type: 'pong', id: msg.id });
        return;
      }
      throw new CapsyncError('unknown-message-type', `${msg.type} is not a mesh message`);
    } catch (err) {
      this.fail(err instanceof CapsyncError ? err : new CapsyncError('bad-message', 'bad mesh message'));
    }
  }

  /** Closes this link because of `err`, with the matching close code. */
  fail(err: CapsyncError): void {
    this.close(closeCodeFor(err.code), closeReasonFor(err.code, err.message));
  }

  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.closed) return;
    this.onClosed();
    this.socket.close(code, reason);
  }

  onClosed(): void {
    this.closed = true;
    this.outbound.stop();
  }

  private send(msg: Message): void {
    this.outbound.send(encodeMessage(msg));
  }
}
