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
import type { ServedChannel } from '../relay/accounted-channel.js';
import type { SendBuffer } from '../relay/send-buffer.js';
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

/** How long a slow consumer's close handshake may take before its socket is dropped. */
const SLOW_CLOSE_MS = 1000;

export interface LockConnectionDeps {
  metrics: RelayMetrics;
  logger: Logger;
  subject?: string;
  relay?: boolean;
  /** The client's address (the TCP peer's): leases of identities without a `sub` count against it. */
  address?: string;
  /** When the credential expires (a socket of its own; a multiplexed socket watches it for all its sessions). */
  expiresAt?: number;
}

let nextConnectionId = 1;

/**
 * One client's lock connection: a socket of its own (`ws://relay/.capsync/locks`, an
 * AccountedChannel) or the lock session of a multiplexed socket (`kind: 'locks'` on
 * `/.capsync/mux`, see mux/lock-sessions.ts). Speaks hello, ping and lock-request; answers every
 * request with one lock-reply (in completion order, not request order: a waiting acquire does
 * not hold up a release). Leases belong to the connection's identity (see ConnectionIdentity),
 * not to the connection: the same identity reconnecting (same token `sub`, or same owner key)
 * may still renew or release them, anyone else is refused `not-owner`, and a client that
 * vanished loses them when they run out. A relay credential may act for the identity a
 * forwarding relay names in the request. Bad input closes this connection (or session) only.
 *
 * On a session the socket's hello is the connection's (`channel.hello`: its owner key, already
 * checked by the socket), so no hello is exchanged on the session: one sent there is a second
 * hello (4400), as on a document's session. Ending, whichever way (the client, bad input, the
 * socket's close), withdraws the waiting acquires (a grant nobody hears of would block the
 * key); held leases stay the identity's until they are released or run out.
 */
export class LockConnection {
  readonly id = `locks-${nextConnectionId++}`;
  private closed = false;
  private readonly gone = new AbortController();
  private cancelExpiry: (() => void) | null = null;
  private readonly identity: ConnectionIdentity;
  /** Every reply goes through it (its socket's): a client that does not read is closed as a slow consumer. */
  readonly outbound: SendBuffer;
  /** A session of a multiplexed socket: its hello was the socket's. */
  private readonly inSession: boolean;

  constructor(
    /** Its own socket's (AccountedChannel), or a session of a multiplexed socket. */
    private readonly channel: ServedChannel,
    private readonly service: LockService,
    private readonly deps: LockConnectionDeps,
  ) {
    this.identity = new ConnectionIdentity({ subject: deps.subject, relay: deps.relay, address: deps.address });
    this.inSession = channel.hello !== undefined;
    if (channel.hello) this.identity.hello(channel.hello.capabilities);
    deps.metrics.connections.inc();
    this.outbound = channel.outbound;
    channel.attach({
      message: (bytes) => this.handle(bytes),
      error: (err) => {
        this.fail(err);
        // Its buffer is full, so the close frame may never get through: do not wait for it.
        if (err.code === 'slow-consumer') setTimeout(() => channel.terminate(), SLOW_CLOSE_MS).unref();
      },
      close: () => this.ended(),
    });
    // Every waiting acquire listens on it; any number of them in flight is normal.
    setMaxListeners(0, this.gone.signal);
    if (deps.expiresAt !== undefined) {
      this.cancelExpiry = onCredentialExpiry(deps.expiresAt, () => this.fail(new CapsyncError('unauthorized', 'token expired')));
    }
  }

  /** Feeds one received WebSocket message (a socket of its own; a session is fed by its socket). */
  receive(data: Uint8Array, isBinary: boolean): void {
    if (this.closed) return;
    this.deps.metrics.bytesIn.inc(data.byteLength);
    this.channel.received(data, isBinary);
  }

  private handle(data: Uint8Array): void {
    if (this.closed) return;
    try {
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
        if (this.inSession) throw new ProtocolError('bad-message', 'a hello on a lock session: the socket\'s hello is the session\'s');
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
    this.channel.send(bytes);
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
    this.ended();
    this.channel.close(code, reason);
  }

  /** Its socket closed (a socket of its own; a session hears its socket's close from the socket). */
  onClosed(): void {
    this.channel.transportClosed();
  }

  /** Once, however it ended: withdraw waiting acquires (a grant nobody hears of would block the key). */
  private ended(): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelExpiry?.();
    this.deps.metrics.connections.dec();
    this.gone.abort();
  }
}
