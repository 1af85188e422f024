import { CapsyncError, CloseCode, closeCodeName, parseSubdocStorageName, type ClientClaims, type DocSession } from '@capsync/core';
import type { LockService } from '../locks/lock-service.js';
import type { AccessGrant, Permission } from '../auth/access.js';
import type { PermissionTarget } from '../auth/live-credential.js';
import type { HookRunner } from '../hooks/hook-runner.js';
import type { ConnectionEvent } from '../hooks/relay-hooks.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import type { DocRegistry } from './doc-registry.js';
import type { DocPeer, RelayDoc } from './relay-doc.js';
import { onCredentialExpiry } from '../auth/credential-expiry.js';
import type { FencedWriteForwarder } from '../mesh/fenced-write-forwarder.js';
import { PeerSessionHost, type InboundPeerHooks } from '../mesh/peer-session-host.js';
import type { SendBuffer, SendBufferOptions } from './send-buffer.js';
import type { ServedChannel } from './accounted-channel.js';
import { ClientSessionHost, type ClientSessionHostDeps } from './client-session-host.js';
import type { ConnectionHost, HostedConnection } from './hosted-connection.js';
import type { QuorumSupport } from './quorum-support.js';

export type { RelaySocket } from './accounted-channel.js';

export interface ConnectionOptions extends SendBufferOptions {
  /** Bytes of input a connection may queue while its document loads. */
  maxQueuedBytes: number;
}

/** This relay's id, and the mesh that a connection from a peer relay tells of itself (see PeerMesh). */
export interface MeshHooks extends InboundPeerHooks {
  relayId: string;
}

export interface ConnectionDeps {
  /** The relay's mesh; peer relays' links are registered there. */
  mesh: MeshHooks;
  /** Set when another relay is the lock authority: fenced writes are forwarded there. */
  fencedWrites?: FencedWriteForwarder | undefined;
  /** Set on a cluster relay: whether the database can give quorum durability (see QuorumSupport). */
  quorum?: QuorumSupport | undefined;
  /** Told when the relay closes a connection (not when the client does). */
  onRelayClose?(conn: RelayConnection, code: number, reason: string): void;
  /** The backend's hooks: told when a client's session begins and ends. */
  hooks?: readonly HookRunner[] | undefined;
  /** A plain client socket's `token-refresh` (see LiveCredential). */
  refreshToken?: ((token: string) => void) | undefined;
  /** Told once when the connection ends (a plain client socket's LiveCredential leaves the re-checks). */
  ended?: (() => void) | undefined;
  /**
   * A session of a multiplexed socket that watches its token's expiry for all its sessions: the
   * session watches none. Otherwise the connection watches its grant's expiry, the one it opened
   * with and each a re-check gives it (an authorization callback's answer may add one later).
   */
  expiryWatchedBySocket?: boolean | undefined;
  registry: DocRegistry;
  locks: LockService;
  metrics: RelayMetrics;
  logger: Logger;
  options: ConnectionOptions;
}

/**
 * One client (or peer relay) connected to one document: the glue between a served socket, its
 * DocSession and the document. The session does the protocol (hello, sync, numbered acks,
 * barriers, input queued while the document loads or is paused, closing with named codes);
 * its host does what the relay adds: ClientSessionHost for a client (permission, validation,
 * fenced writes, quorum), PeerSessionHost for a peer relay that dialled in (trust, replication
 * positions, claims). This class holds the document (acquired from the registry, released
 * once: a peer's link holds it too, see PeerMesh), the credential's expiry, the connection
 * metrics, and is the document's DocPeer for broadcasts. A client's is a PermissionTarget: its
 * permission can change while it is open (see LiveCredential).
 */
export class RelayConnection implements DocPeer, HostedConnection, PermissionTarget {
  readonly kind = 'connection' as const;
  /**
   * Set when this is a peer relay's document link (relay credential, relay named in the
   * request): its updates are trusted with fenced content, it acknowledges what we send.
   */
  readonly peerRelayId: string | undefined;
  /** Every message sent goes through it (slow consumers are closed, whatever they asked for). */
  readonly outbound: SendBuffer;
  private readonly channel: ServedChannel;
  private readonly host: ConnectionHost;
  private readonly session: DocSession;
  private doc: RelayDoc | null = null;
  private released = false;
  private cancelExpiry: (() => void) | null = null;
  /** What the backend's onConnect and onDisconnect hooks are told. */
  private hookEvent: ConnectionEvent;
  private readonly reported: boolean;
  /** The identity it was opened for. */
  readonly subject: string | undefined;
  /** It watches its grant's expiry itself (unless its multiplexed socket watches its token's, see ConnectionDeps). */
  private readonly watchesExpiry: boolean;
  /** Its onConnect was made (not dropped): its onDisconnect will be, whatever the bound. */
  private connectReportedTo: readonly HookRunner[] = [];

  constructor(
    /** Its own socket's (AccountedChannel), or a session of a multiplexed socket. */
    channel: ServedChannel,
    readonly docName: string,
    grant: AccessGrant,
    private readonly deps: ConnectionDeps,
    peerId?: string,
  ) {
    deps.metrics.connections.inc();
    this.peerRelayId = grant.relay && peerId ? peerId : undefined;
    this.subject = grant.subject;
    this.watchesExpiry = deps.expiryWatchedBySocket !== true;
    this.hookEvent = { docName, identity: grant.subject, permission: grant.permission };
    // Clients only: relays' links (peers, forwarded fenced writes and locks) are not the app's sessions.
    this.reported = !grant.relay;
    this.channel = channel;
    this.outbound = this.channel.outbound;
    const options = { maxQueuedBytes: deps.options.maxQueuedBytes, room: this.channel };
    const { metrics, logger, mesh } = deps;
    // Object.assign, not a spread with more keys: ~3 µs per session in V8 (see core newDoc).
    const hostDeps: Pick<ClientSessionHostDeps, 'address'> = { address: deps.options.address };
    this.host =
      this.peerRelayId !== undefined
        ? new PeerSessionHost(this, this.channel, { relayId: mesh.relayId, metrics, logger }, options, { kind: 'accepted', grant, mesh })
        : new ClientSessionHost(this, this.channel, grant, Object.assign({}, deps, hostDeps), options);
    this.session = this.host.session;
    this.watchExpiry(grant.expiresAt);
    void this.open();
  }

  private watchExpiry(expiresAt: number | undefined): void {
    this.cancelExpiry?.();
    this.cancelExpiry = null;
    if (expiresAt !== undefined && this.watchesExpiry) {
      this.cancelExpiry = onCredentialExpiry(expiresAt, () => this.fail(new CapsyncError('unauthorized', 'token expired')));
    }
  }

  // ---- live permissions (PermissionTarget) ----

  /** What its permission is decided on: the document, or a subdocument's parent. */
  get authName(): string {
    return parseSubdocStorageName(this.docName)?.parent ?? this.docName;
  }

  get permission(): Permission {
    return this.host instanceof ClientSessionHost ? this.host.permission : 'write';
  }

  get closed(): boolean {
    return this.session.isClosed;
  }

  /** A new grant for its identity: its permission (live) and expiry. */
  regrant(grant: AccessGrant): void {
    if (!(this.host instanceof ClientSessionHost) || this.session.isClosed) return;
    this.host.setPermission(grant.permission);
    this.hookEvent = { ...this.hookEvent, permission: grant.permission };
    this.watchExpiry(grant.expiresAt);
  }

  /** The permission is gone: this session alone is closed with `err`'s code. */
  revoke(err: CapsyncError): void {
    this.fail(err);
  }

  /** The document, once loaded (HostedConnection). */
  get document(): RelayDoc | null {
    return this.doc;
  }

  private async open(): Promise<void> {
    let doc: RelayDoc;
    for (let attempt = 1; ; attempt++) {
      try {
        doc = await this.deps.registry.acquire(this.docName);
      } catch (err) {
        this.deps.logger.error({ err, doc: this.docName }, 'loading document failed');
        this.fail(new CapsyncError('storage-failure', 'document could not be loaded'));
        return;
      }
      if (this.session.isClosed) {
        this.deps.registry.release(this.docName, doc);
        return;
      }
      if (!this.deps.registry.superseded(doc)) break;
      // A delete took the copy out while this connection waited for it: the new incarnation is
      // acquired instead. This session took nothing of the old one (its hello and updates wait
      // for the open); a replica of the old incarnation is refused by its hello like any other.
      this.deps.registry.release(this.docName, doc);
      if (attempt === 3) {
        this.fail(new CapsyncError('storage-failure', `document "${this.docName}" was deleted again and again while it loaded`));
        return;
      }
    }
    this.doc = doc;
    doc.peers.add(this);
    this.host.open(doc);
    // onDisconnect follows only an onConnect that was made (not dropped under the bound).
    if (this.reported) this.connectReportedTo = (this.deps.hooks ?? []).filter((runner) => runner.call('onConnect', this.hookEvent).dropped === false);
  }

  /** Feeds one received WebSocket message. */
  receive(data: Uint8Array, isBinary: boolean): void {
    if (this.session.isClosed) return;
    this.deps.metrics.bytesIn.inc(data.byteLength);
    this.channel.received(data, isBinary);
  }

  /** Processes queued input once the document is ready (DocPeer). */
  resume(): void {
    this.session.resume();
  }

  // ---- sending (DocPeer) ----

  /** A broadcast update; drops this connection if it cannot keep up. */
  sendUpdate(update: Uint8Array): void {
    this.session.sendUpdate(update);
  }

  /** A broadcast awareness change. */
  sendAwareness(update: Uint8Array): void {
    this.session.sendAwareness(update);
  }

  /** Claims on client ids: DocOwnership sends them to peer relays' links only (`peerRelayId`). */
  sendClaims(claims: ClientClaims[]): void {
    this.session.send({ type: 'client-owners', claims });
  }

  // ---- closing ----

  /** Closes this connection because of `err`, with the matching close code. */
  fail(err: CapsyncError): void {
    this.session.fail(err);
  }

  /** The document was deleted (DocPeer): closes with 'document-deleted' (4410). */
  closeDeleted(err: CapsyncError): void {
    this.fail(err);
  }

  /** Closes with a code and reason. */
  close(code: number = CloseCode.Normal, reason = ''): void {
    this.session.close(code, reason);
  }

  /** The socket closed (by either side). */
  onClosed(): void {
    this.channel.transportClosed();
  }

  /** HostedConnection: the session ended, once; `byUs` when the relay closed it. */
  ended(byUs: { code: number; reason: string } | null): void {
    if (this.released) return;
    this.released = true;
    this.deps.ended?.();
    this.deps.metrics.connections.dec();
    this.cancelExpiry?.();
    const doc = this.doc;
    if (doc) {
      doc.peers.delete(this);
      doc.awareness.removeAll(this);
      this.deps.registry.release(this.docName, doc);
    }
    if (byUs) {
      this.deps.metrics.closes.inc({ code: closeCodeName(byUs.code) });
      this.deps.onRelayClose?.(this, byUs.code, byUs.reason);
    }
    // Paired: made past the in-flight bound too, so a backend counting sessions never drifts.
    if (doc) for (const runner of this.connectReportedTo) void runner.call('onDisconnect', { ...this.hookEvent, ...(byUs ? { code: byUs.code } : {}) }, { unbounded: true });
  }
}
