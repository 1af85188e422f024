import { CapsyncError, CloseCode, RELAY_CAPABILITY, closeCodeFor, closeReasonFor, decodeMessage, encodeMessage } from '@capsync/core';
import type { RelaySocket } from '../relay/connection.js';
import { relayHello } from './peer-socket.js';

/** Path of a relay's mesh endpoint: the control link peers keep open to see it is alive. */
export const MESH_PATH = '.capsync/mesh';

/**
 * The relay side of a peer's control link (see PeerEndpoint): answers the peer's hello with
 * this relay's id. Liveness is WebSocket ping/pong, which `ws` answers by itself. Only relay
 * credentials may open it; anything but a relay hello closes it.
 */
export class MeshConnection {
  private closed = false;

  constructor(
    private readonly socket: RelaySocket,
    private readonly relayId: string,
  ) {}

  receive(data: Uint8Array): void {
    if (this.closed) return;
    try {
      const msg = decodeMessage(data);
      if (msg.type === 'hello' && msg.capabilities.includes(RELAY_CAPABILITY)) {
        this.socket.send(encodeMessage(relayHello(this.relayId)));
        return;
      }
      if (msg.type === 'ping') {
        this.socket.send(encodeMessage({ type: 'pong', id: msg.id }));
        return;
      }
      throw new CapsyncError('unknown-message-type', `${msg.type} is not a mesh message`);
    } catch (err) {
      const e = err instanceof CapsyncError ? err : new CapsyncError('bad-message', 'bad mesh message');
      this.close(closeCodeFor(e.code), closeReasonFor(e.code, e.message));
    }
  }

  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close(code, reason);
  }

  onClosed(): void {
    this.closed = true;
  }
}
