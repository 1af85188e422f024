import {
  DocSession,
  ProtocolError,
  helloFor,
  relayIdCapability,
  type AppliedUpdate,
  type CapsyncError,
  type Channel,
  type HelloMessage,
  type Message,
  type SessionHooks,
  type SessionOptions,
} from '@capsync/core';
import type { AccessGrant } from '../auth/access.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { ConnectionHost, HostedConnection } from '../relay/hosted-connection.js';
import { ReadOnlyRefusal } from '../relay/read-only-refusal.js';
import type { PeerWriter } from '../relay/doc-writer.js';
import type { RelayDoc } from '../relay/relay-doc.js';
import { ConvergenceRound } from './convergence-round.js';
import { relayHello } from './peer-socket.js';

/** What the mesh hears of the links peer relays open to this relay (see PeerMesh). */
export interface InboundPeerHooks {
  inboundOpened(peerId: string, link: HostedConnection): void;
  inboundClosed(peerId: string, link: HostedConnection): void;
}

/**
 * Which end of the link this host serves, and what differs between the two ends (the
 * deliberate asymmetries; everything else is the same code):
 * - `accepted`: a peer relay dialled this relay's document endpoint (RelayConnection holds the
 *   document for it). It says hello first and we answer; its grant may still be read-only for
 *   the document; the mesh learns of the link (one link per pair, the smaller relay id's
 *   stays; re-linking when it goes); a failure closes it with a named code; its traffic counts
 *   as a served connection's.
 * - `dialled`: this relay's link to a peer (PeerLink, which does not hold the document). Our
 *   hello goes first; a failure is logged and the link resyncs on a new socket (the peer is
 *   trusted: healing beats refusing); messages a relay has no use for are ignored; its
 *   traffic counts in capsync_peer_bytes_*; `converged` runs once both relays durably hold
 *   what the other had when the socket opened (replicate-all waits for it).
 */
export type PeerEnd =
  | { kind: 'accepted'; grant: AccessGrant; mesh: InboundPeerHooks }
  /** `helloSaid`: our hello already went out on the link (the Dialer says it first on a socket it dialled). */
  | { kind: 'dialled'; converged(seconds: number): void; helloSaid?: boolean };

export interface PeerSessionHostDeps {
  /** This relay's id: our hello names it. */
  relayId: string;
  metrics: RelayMetrics;
  logger: Logger;
}

/** A relay credential's rights as the dialling end sees its peer: it replicates every document. */
const PEER_GRANT: AccessGrant = { permission: 'write', relay: true };

/**
 * The relay's side of one DocSession with a peer relay, either end: what a link between two
 * relays does beyond the session.
 * - Trust: updates are validated for integrity only (a peer replicates everyone's content,
 *   fenced values included) and applied through RelayDoc, attributed to the peer relay.
 * - Durability: the messages we send are numbered and the peer's acks become its replication
 *   position (`recordPeerDurable`: quorum, lag); we ack what it sends once committed (the session).
 * - Ownership: our client id claims go before every sync step 2, the peer's are learned
 *   before the content that follows them (see DocOwnership).
 * - Awareness: the peer relays many clients' presence (`relay: true`, see DocAwareness).
 * One host per socket (a reconnect makes a new one), like its session.
 */
export class PeerSessionHost implements SessionHooks, ConnectionHost {
  readonly session: DocSession;
  private readonly grant: AccessGrant;
  /** Who writes through this link, for RelayDoc.receive: the peer relay (trusted). */
  private readonly writer: PeerWriter;
  private readonly readOnly: ReadOnlyRefusal | null;
  /** The dialled end's convergence of this socket; null on the accepted end. */
  private readonly round: ConvergenceRound | null;

  constructor(
    private readonly owner: HostedConnection,
    channel: Channel,
    private readonly deps: PeerSessionHostDeps,
    options: Omit<SessionOptions, 'numberSent' | 'hello'>,
    private readonly end: PeerEnd,
  ) {
    this.grant = end.kind === 'accepted' ? end.grant : PEER_GRANT;
    this.writer = { kind: 'peer', source: owner, subject: this.grant.subject, end: end.kind };
    this.round = end.kind === 'dialled' ? new ConvergenceRound(end.converged) : null;
    this.session = new DocSession(channel, this, {
      ...options,
      numberSent: true,
      // An accepting relay's hello only answers (stock clients never see one): the dialling relay
      // speaks first. On a multiplexed socket both hellos were said once on the socket (channel.hello);
      // on a socket of its own the Dialer said ours.
      hello: end.kind === 'dialled' && !end.helloSaid && !channel.hello ? relayHello(deps.relayId) : undefined,
    });
    this.readOnly = this.grant.permission === 'write' ? null : new ReadOnlyRefusal(this.session, owner.docName, deps.metrics);
    if (end.kind === 'accepted' && owner.peerRelayId) end.mesh.inboundOpened(owner.peerRelayId, owner);
  }

  /** True once this socket converged (dialled end; see ConvergenceRound). */
  get converged(): boolean {
    return this.round?.done ?? false;
  }

  /** The document: every hook runs after the session opened on it. */
  private get doc(): RelayDoc {
    return this.owner.document!;
  }

  open(doc: RelayDoc): void {
    if (this.owner.peerRelayId) doc.replication.meet(this.owner.peerRelayId);
    this.session.open(doc);
  }

  hello(): HelloMessage | null {
    // The dialling end spoke first: the peer's hello is its answer (the session checked its version).
    return this.end.kind === 'dialled' ? null : helloFor('relay-to-peer', [relayIdCapability(this.deps.relayId)]);
  }

  applyUpdate(update: Uint8Array, seq: number): AppliedUpdate | null {
    if (this.readOnly) {
      this.readOnly.refuse(seq);
      return null;
    }
    return this.doc.receive(update, this.writer);
  }

  /** A peer's barrier asks for a fresh ack (RelayDoc.requestPeerAcks): the session's ack answers it. */
  barrier(): void {}

  awareness(update: Uint8Array): void {
    // A peer relay's link relays the presence of its clients (see DocAwareness).
    this.doc.awareness.apply(update, this.owner, { relay: true });
  }

  extension(msg: Message): void {
    switch (msg.type) {
      case 'client-owners':
        // Recorded before the content that follows; its ack waits for their commit.
        this.doc.learnClaims(msg.claims, this.owner);
        return;
      case 'error':
        // The peer refused something we sent (a read-only relay credential): nothing to redo.
        this.deps.logger.warn({ doc: this.owner.docName, peer: this.owner.peerRelayId, code: msg.code, msg: msg.message }, 'peer relay refused a message');
        return;
      default:
        // The dialling end ignores what a relay has no use for (pong, quorum-ack...); the
        // accepting end refuses it like any endpoint (fenced writes come from the forwarder,
        // which is served as a client).
        if (this.end.kind === 'dialled') return;
        throw new ProtocolError('unknown-message-type', `${msg.type} messages are not part of a link between relays`);
    }
  }

  /** The peer committed our messages 1..`seq`, which covered the document up to `position`. */
  acked(position: number, seq: number): void {
    const peer = this.owner.peerRelayId;
    if (peer && position > 0) this.doc.replication.recordPeerDurable(peer, position);
    this.round?.acked(seq);
  }

  position(): number {
    return this.doc.replication.applied;
  }

  beforeStep2(): void {
    // Who owns what it carries goes first (see DocOwnership).
    for (const claims of this.doc.claimsForSync()) this.session.send({ type: 'client-owners', claims });
  }

  sentStep2(seq: number): void {
    this.round?.sentStep2(seq);
  }

  messageIn(type: Message['type']): void {
    if (this.end.kind === 'accepted') this.deps.metrics.messagesIn.inc({ type });
  }

  messageOut(type: Message['type'], bytes: number): void {
    if (this.end.kind === 'dialled') {
      this.deps.metrics.peerBytesOut.inc(bytes);
      return;
    }
    this.deps.metrics.messagesOut.inc({ type });
    this.deps.metrics.bytesOut.inc(bytes);
  }

  durable(receivedAt: number, kind: 'sync-step-2' | 'update'): void {
    // Converged counts what is durable here, not just applied.
    if (kind === 'sync-step-2') this.round?.received();
    if (this.end.kind === 'accepted') this.deps.metrics.ackSeconds.observe((performance.now() - receivedAt) / 1000);
  }

  failing(err: CapsyncError): void {
    this.deps.metrics.refusals.inc({ reason: err.code });
    const { docName: doc, peerRelayId: peer } = this.owner;
    if (this.end.kind === 'dialled') {
      // The peer relay sent something we refuse, or one side could not keep up: resync from scratch.
      this.deps.logger[err.code === 'slow-consumer' ? 'warn' : 'error']({ doc, peer, code: err.code, msg: err.message }, 'peer relay link failed; resyncing');
      return;
    }
    const level = err.code === 'internal' || err.code === 'storage-failure' ? 'error' : 'info';
    this.deps.logger[level]({ doc, peer, code: err.code, msg: err.message }, 'closing connection');
  }

  unexpected(err: unknown, what: 'message' | 'commit'): void {
    this.deps.logger.error({ err, doc: this.owner.docName, peer: this.owner.peerRelayId }, what === 'message' ? 'unexpected error handling a message from a peer relay' : 'storing an update from a peer relay failed');
  }

  ended(byUs: { code: number; reason: string } | null): void {
    if (this.end.kind === 'accepted' && this.owner.peerRelayId) this.end.mesh.inboundClosed(this.owner.peerRelayId, this.owner);
    this.owner.ended(byUs);
  }
}
