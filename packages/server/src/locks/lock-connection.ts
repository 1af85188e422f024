import { setMaxListeners } from 'node:events';
import {
  CapsyncError,
  checkProtocolVersion,
  helloFor,
  ProtocolError,
  closeCodeFor,
  closeCodeName,
  closeReasonFor,
  decodeMessage,
  encodeMessage,
  CloseCode,
  type Message,
} from '@capsync/core';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { RelaySocket } from '../relay/connection.js';
import { SendBuffer, type SendBufferOptions } from '../relay/send-buffer.js';
import type { LockService } from './lock-service.js';
import { onCredentialExpiry } from '../auth/credential-expiry.js';
import { ConnectionIdentity } from './lock-identity.js';

/** The WebSocket path of the lock endpoint (a name no document may have). */
export const LOCKS_PATH = '.capsync/locks';

/**
 * Hello capability naming the relay's lock backend (`lock-backend:embedded`, `...:etcd`,
 * `...:forwarded`): a relay that forwards its locks refuses to forward to one that forwards
 * too (a relay pointed at itself, or a chain), which would pass requests around until their
 * deadlines.
 */
export const LOCK_BACKEND_CAPABILITY = 'lock-backend:';

let nextConnectionId = 1;

/**
 * One client's lock connection (`ws://relay/.capsync/locks`). Speaks hello, ping and
 * lock-request; answers every request with one lock-reply (in completion order, not request
 * order: a waiting acquire does not hold up a release). Leases belong to the connection's
 * identity (see ConnectionIdentity), not to the connection: the same identity reconnecting
 * (same token `sub`, or same owner key) may still renew or release them, anyone else is
 * refused `not-owner`, and a client that vanished loses them when they run out. A relay
 * credential may act for the identity a forwarding relay names in the request. Bad input
 * closes this connection only.
 */
export class LockConnection {
  readonly id = `locks-${nextConnectionId++}`;
  private closed = false;
  private readonly gone = new AbortController();
  private cancelExpiry: (() => void) | null = null;
  private readonly identity: ConnectionIdentity;
  /** Every reply goes through it: a client that does not read is closed as a slow consumer. */
  readonly outbound: SendBuffer;

  constructor(
    private readonly socket: RelaySocket,
    private readonly service: LockService,
    private readonly deps: {
      metrics: RelayMetrics;
      logger: Logger;
      subject?: string;
      relay?: boolean;
      /** The client's address (the TCP peer's): leases of identities without a `sub` count against it. */
      address?: string;
      expiresAt?: number;
      outbound: SendBufferOptions;
    },
  ) {
    this.identity = new ConnectionIdentity({ subject: deps.subject, relay: deps.relay, address: deps.address });
    deps.metrics.connections.inc();
    this.outbound = new SendBuffer(socket, deps.outbound, (err) => {
      this.fail(err);
      // Its buffer is full, so the close frame may never get through: do not wait for it.
      setTimeout(() => socket.terminate(), 1000).unref();
    });
    // Every waiting acquire listens on it; any number of them in flight is normal.
    setMaxListeners(0, this.gone.signal);
    if (deps.expiresAt !== undefined) {
      this.cancelExpiry = onCredentialExpiry(deps.expiresAt, () => this.fail(new CapsyncError('unauthorized', 'token expired')));
    }
  }


  receive(data: Uint8Array, isBinary: boolean): void {
    if (this.closed) return;
    this.deps.metrics.bytesIn.inc(data.byteLength);
    try {
      if (!isBinary) throw new ProtocolError('text-frame', 'text frames are not supported; send binary frames');
      const msg = decodeMessage(data);
      this.deps.metrics.messagesIn.inc({ type: msg.type });
      this.dispatch(msg);
    } catch (err) {
      this.fail(err instanceof CapsyncError ? err : new CapsyncError('internal', 'internal error'));
    }
  }

  private dispatch(msg: Message): void {
    switch (msg.type) {
      case 'hello':
        checkProtocolVersion(msg.protocolVersion);
        this.identity.hello(msg.capabilities);
        this.send(helloFor('relay-locks', [LOCK_BACKEND_CAPABILITY + this.service.backend.kind]));
        return;
      case 'ping':
        this.send({ type: 'pong', id: msg.id });
        return;
      case 'lock-request': {
        void this.service.handle(msg, this.identity.leaseHolder(msg.owner), this.gone.signal).then((reply) => this.send(reply));
        return;
      }
      default:
        throw new ProtocolError('unknown-message-type', `${msg.type} messages are not accepted on the lock endpoint`);
    }
  }

  private send(msg: Message): void {
    if (this.closed) return;
    const bytes = encodeMessage(msg);
    this.deps.metrics.messagesOut.inc({ type: msg.type });
    this.deps.metrics.bytesOut.inc(bytes.byteLength);
    this.outbound.send(bytes);
  }

  fail(err: CapsyncError): void {
    if (this.closed) return;
    this.deps.metrics.refusals.inc({ reason: err.code });
    this.deps.logger.info({ conn: this.id, code: err.code, msg: err.message }, 'closing lock connection');
    this.close(closeCodeFor(err.code), closeReasonFor(err.code, err.message));
  }

  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.closed) return;
    this.deps.metrics.closes.inc({ code: closeCodeName(code) });
    this.onClosed();
    this.socket.close(code, reason);
  }

  /** The socket closed: withdraw waiting acquires (a grant nobody hears of would block the key). */
  onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.outbound.stop();
    this.cancelExpiry?.();
    this.deps.metrics.connections.dec();
    this.gone.abort();
  }
}
