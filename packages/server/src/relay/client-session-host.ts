import {
  DocSession,
  DocumentDeletedError,
  INCARNATIONS_CAPABILITY,
  deletedAt,
  incarnationOf,
  ProtocolError,
  TOKEN_REFRESH_CAPABILITY,
  declaredWritersOf,
  helloFor,
  type AppliedUpdate,
  type CapsyncError,
  type Channel,
  type HelloMessage,
  type Message,
  type SessionHooks,
  type SessionOptions,
} from '@capsync/core';
import type { AccessGrant, Permission } from '../auth/access.js';
import type { LockService } from '../locks/lock-service.js';
import { ConnectionIdentity } from '../locks/lock-identity.js';
import type { Logger } from '../logger.js';
import type { FencedWriteForwarder } from '../mesh/fenced-write-forwarder.js';
import type { RelayMetrics } from '../metrics.js';
import { fencedSet } from './fenced-set.js';
import type { ConnectionHost, HostedConnection } from './hosted-connection.js';
import { QuorumBarrier } from './quorum-barrier.js';
import { ReadOnlyRefusal } from './read-only-refusal.js';
import type { RelayDoc } from './relay-doc.js';
import type { ClientWriter } from './doc-writer.js';
import type { QuorumSupport } from './quorum-support.js';

export type { HostedConnection } from './hosted-connection.js';

export interface ClientSessionHostDeps {
  /** Set when another relay is the lock authority: fenced writes are forwarded there. */
  fencedWrites?: FencedWriteForwarder | undefined;
  /** Set on a cluster relay: a quorum barrier is refused at once when the database cannot give quorum. */
  quorum?: QuorumSupport | undefined;
  locks: LockService;
  metrics: RelayMetrics;
  logger: Logger;
  /** The client's address, for its share of awareness bounds. */
  address?: string | undefined;
  /**
   * Takes a `token-refresh` of this connection (a plain socket's LiveCredential); unset on a
   * session of a multiplexed socket, whose refreshes go on its control session.
   */
  refreshToken?: ((token: string) => void) | undefined;
}

/**
 * The relay's side of one client's DocSession: what a client link does beyond the session.
 * - Permission: a read-only client's update is refused, with a typed `error` to a capsync
 *   client and one `auth-denied` to a stock y-websocket client (which understands only that).
 * - Validation, then apply, through RelayDoc (client id ownership by `subject`, declared
 *   writers, caps, fenced areas), and the metrics of both.
 * - Fenced writes (`cp-set`), quorum barriers (`quorum-ack`), the hello's identity (owner key,
 *   declared client ids) and quorum flag.
 * - Live permissions: `setPermission` changes it while open (a refresh or re-check, see
 *   LiveCredential), told to a client that understands it (`permission`); a plain socket's
 *   `token-refresh` goes to `refreshToken`.
 *
 * Clients only: a peer relay that dialled in runs PeerSessionHost (mesh/peer-session-host.ts).
 */
export class ClientSessionHost implements SessionHooks, ConnectionHost {
  readonly session: DocSession;
  /** Whose leases this connection's fenced writes use. */
  private readonly identity: ConnectionIdentity;
  /** Who writes through this connection, for RelayDoc.receive; its hello sets the client ids it declared. */
  private readonly writer: ClientWriter;
  /** The client asked for quorum acknowledgements of its barriers. */
  private quorum = false;
  /** The quorum wait of this connection's latest barrier (see QuorumBarrier); made on first use. */
  private quorumBarrier: QuorumBarrier | null = null;
  private readonly readOnly: ReadOnlyRefusal;
  /** The permission now: the grant's, until a refresh or re-check changes it. */
  private permissionNow: Permission;
  /** The client's hello said it understands `permission` messages. */
  private livePermissions = false;

  constructor(
    private readonly conn: HostedConnection,
    channel: Channel,
    private readonly grant: AccessGrant,
    private readonly deps: ClientSessionHostDeps,
    options: Omit<SessionOptions, 'numberSent'>,
  ) {
    this.permissionNow = grant.permission;
    this.identity = new ConnectionIdentity(grant);
    this.writer = { kind: 'client', source: conn, subject: grant.subject, declared: undefined };
    // A client's acks are not numbered against what we send: it is not a durable replica.
    const unnumbered: Pick<SessionOptions, 'numberSent'> = { numberSent: false };
    this.session = new DocSession(channel, this, Object.assign({}, options, unnumbered));
    this.readOnly = new ReadOnlyRefusal(this.session, conn.docName, deps.metrics);
  }

  open(doc: RelayDoc): void {
    this.session.open(doc);
  }

  /** The document: every hook runs after the session opened on it. */
  private get doc(): RelayDoc {
    return this.conn.document!;
  }

  hello(msg: HelloMessage): HelloMessage {
    // A replica of an older incarnation (the name was deleted since it synced) is refused before
    // the session takes any of its updates: the hello is handled first, on a plain socket and on
    // a multiplexed one (its session-open's capabilities), so nothing of it is ever merged.
    const incarnation = incarnationOf(msg);
    // Counted by `failing` as a refusal with reason 'document-deleted'.
    // Only an OLDER one: a newer one (this relay restarted on memory storage, its store restored
    // from a backup) is served, and the client stores this relay's incarnation (told below).
    if (incarnation !== undefined && incarnation < this.doc.incarnation) {
      throw new DocumentDeletedError(`${deletedAt(this.doc.incarnation)}document "${this.conn.docName}" was deleted since this replica synced (its incarnation ${incarnation})`);
    }
    // A client that stores incarnations learns the document's first, before any sync message.
    // After the hello answer (sent once this returns, on a plain socket). Not when it declared
    // this one: its replica stores it already.
    if (incarnation !== this.doc.incarnation && msg.capabilities.includes(INCARNATIONS_CAPABILITY)) {
      const incarnationNow = this.doc.incarnation;
      queueMicrotask(() => this.session.send({ type: 'incarnation', incarnation: incarnationNow }));
    }
    this.identity.hello(msg.capabilities);
    const declared = declaredWritersOf(msg);
    this.writer.declared = declared;
    // Only writers hold ids: a read-only user must not reserve (or push out) anyone's.
    if (declared && this.grant.subject && this.permissionNow === 'write') this.doc.announceWriters(this.grant.subject, declared, this.conn);
    this.quorum = msg.capabilities.includes('quorum');
    this.livePermissions = msg.capabilities.includes(TOKEN_REFRESH_CAPABILITY);
    return helloFor('relay');
  }

  get permission(): Permission {
    return this.permissionNow;
  }

  /**
   * The permission changed while the session is open: from now on its updates are taken or
   * refused (as a read-only connection's, ReadOnlyRefusal). A client that understands it is told.
   */
  setPermission(permission: Permission): void {
    if (permission === this.permissionNow) return;
    this.permissionNow = permission;
    const declared = this.writer.declared;
    // Became a writer: its declared client ids are its own now (see `hello`).
    if (permission === 'write' && declared && this.grant.subject && this.conn.document) this.doc.announceWriters(this.grant.subject, declared, this.conn);
    if (this.livePermissions) this.session.send({ type: 'permission', permission });
  }

  applyUpdate(update: Uint8Array, seq: number): AppliedUpdate | null {
    if (this.permissionNow !== 'write') {
      this.readOnly.refuse(seq);
      return null;
    }
    return this.doc.receive(update, this.writer);
  }

  barrier(seq: number): void {
    if (!this.quorum) return;
    const support = this.deps.quorum;
    if (!support) return this.awaitQuorum(seq);
    void support.refusal().then((reason) => {
      if (this.session.isClosed) return;
      if (reason === null) return this.awaitQuorum(seq);
      this.deps.metrics.quorumWaits.inc({ outcome: 'refused' });
      this.session.send({ type: 'error', code: 'quorum-unsupported', message: reason, seq });
    });
  }

  private awaitQuorum(seq: number): void {
    (this.quorumBarrier ??= new QuorumBarrier(this.deps.metrics)).await(this.doc, () => this.session.send({ type: 'quorum-ack', seq }));
  }

  awareness(update: Uint8Array): void {
    this.doc.awareness.apply(update, this.conn, { relay: false, identity: this.identity.lasting, address: this.deps.address, subject: this.grant.subject });
  }

  extension(msg: Message): void {
    switch (msg.type) {
      case 'cp-set': {
        const owner = this.identity.actingFor(msg.owner);
        void fencedSet(msg, {
          docName: this.conn.docName,
          permission: this.permissionNow,
          owner,
          current: () => (this.session.isClosed ? null : this.conn.document),
          // After the value's broadcast, which may wait behind a state answer (DocSession.sendAfterContent).
          reply: (code, message) => this.session.sendAfterContent({ type: 'cp-reply', id: msg.id, code, message }),
        }, this.deps);
        return;
      }
      case 'lock-request':
        throw new ProtocolError('unknown-message-type', 'lock requests go to the lock endpoint, not a document connection');
      case 'token-refresh':
        if (!this.deps.refreshToken) throw new ProtocolError('unknown-message-type', 'a multiplexed socket takes token-refresh on its control session');
        this.deps.refreshToken(msg.token);
        return;
      default:
        // client-owners, ack (only links to peer relays number what we send and take acks),
        // auth-denied, error, pong, lock-reply, cp-reply, quorum-ack.
        throw new ProtocolError('unknown-message-type', `${msg.type} messages are sent by relays, not clients`);
    }
  }

  /** Never called: a client's session does not number what it sends (its acks go to `extension`). */
  acked(): void {}

  position(): number {
    return this.doc.replication.applied;
  }

  /** Claims are exchanged between relays only (see DocOwnership). */
  beforeStep2(): void {}

  messageIn(type: Message['type']): void {
    this.deps.metrics.messagesIn.inc({ type });
  }

  messageOut(type: Message['type'], bytes: number): void {
    this.deps.metrics.messagesOut.inc({ type });
    this.deps.metrics.bytesOut.inc(bytes);
  }

  durable(receivedAt: number): void {
    this.deps.metrics.ackSeconds.observe((performance.now() - receivedAt) / 1000);
  }

  failing(err: CapsyncError): void {
    this.deps.metrics.refusals.inc({ reason: err.code });
    const level = err.code === 'internal' || err.code === 'storage-failure' ? 'error' : 'info';
    this.deps.logger[level]({ doc: this.conn.docName, code: err.code, msg: err.message }, 'closing connection');
  }

  unexpected(err: unknown, what: 'message' | 'commit'): void {
    this.deps.logger.error({ err, doc: this.conn.docName }, what === 'message' ? 'unexpected error handling a message' : 'storing an update failed');
  }

  ended(byUs: { code: number; reason: string } | null): void {
    this.quorumBarrier?.cancel('abandoned');
    this.conn.ended(byUs);
  }
}
