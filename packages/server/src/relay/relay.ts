import { EventEmitter } from 'node:events';
import { CapsyncError, CloseCode, closeReasonFor, type DocStore } from '@capsync/core';
import type { AccessControl, AccessGrant, Principal } from '../auth/access.js';
import type { ResolvedRelayOptions } from '../config.js';
import type { Logger } from '../logger.js';
import type { RelayMetrics } from '../metrics.js';
import { LOCK_BACKEND_CAPABILITY, LockConnection, type LockConnectionDeps } from '../locks/lock-connection.js';
import type { LockService } from '../locks/lock-service.js';
import { MeshConnection } from '../mesh/mesh-connection.js';
import { PeerMesh } from '../mesh/peer-mesh.js';
import { ReplicateAll } from '../mesh/replicate-all.js';
import { FencedWriteForwarder } from '../mesh/fenced-write-forwarder.js';
import { AddressSessions } from '../mux/address-sessions.js';
import { MuxConnection } from '../mux/mux-connection.js';
import { PeerMuxSocket } from '../mesh/peer-mux-socket.js';
import { onCredentialExpiry } from '../auth/credential-expiry.js';
import { servedLocks } from '../mux/lock-sessions.js';
import { AccountedChannel } from './accounted-channel.js';
import { RelayConnection, type ConnectionDeps, type MeshHooks, type RelaySocket } from './connection.js';
import type { SendBufferOptions } from './send-buffer.js';
import { DocRegistry } from './doc-registry.js';
import { deleteDocument, type DeletedDocument } from './doc-deletion.js';
import { HookRunner } from '../hooks/hook-runner.js';
import type { RelayHooks } from '../hooks/relay-hooks.js';
import { OpenServerDocuments, type OpenDocumentOptions, type ServerDocument } from './server-document.js';
import { StorageOutage } from './storage-outage.js';
import { UnsentBudget } from './unsent-budget.js';
import { SyncReplicationCheck, type QuorumSupport } from './quorum-support.js';
import { isSharedDocStore } from '../storage/shared-doc-store.js';
import { LiveCredential, type LiveCredentialOwner } from '../auth/live-credential.js';
import { PermissionRechecks } from './permission-rechecks.js';

export interface RelayDeps {
  store: DocStore;
  access: AccessControl;
  metrics: RelayMetrics;
  logger: Logger;
  options: ResolvedRelayOptions;
  locks: LockService;
  /** The relay credential presented to peers (see relayCredential). */
  credential: () => Promise<string | undefined>;
  /** The relay's webhook events, made from hooks of their own (see relayWebhooks). */
  webhookHooks?: RelayHooks | undefined;
  /** Closes what writes to the store besides documents (webhook deliveries), once documents closed, before the store. */
  beforeStoreClose?: () => Promise<void>;
}

/**
 * The relay core: documents, connections, storage. Transport-agnostic: it is handed sockets
 * (anything implementing RelaySocket) that the edge (`createRelay`) already authorized.
 */
export interface RelayEvents {
  /** The relay closed a connection (bad input, slow consumer, expiry, shutdown). */
  'connection-closed': [event: { docName: string; code: number; reason: string }];
}

export class Relay extends EventEmitter<RelayEvents> {
  readonly registry: DocRegistry;
  readonly store: DocStore;
  readonly access: AccessControl;
  readonly metrics: RelayMetrics;
  readonly logger: Logger;
  readonly options: ResolvedRelayOptions;
  /** The CP side: lock requests and fencing checks. */
  readonly locks: LockService;
  /** Peer relays and the document links to them. */
  readonly mesh: PeerMesh;
  /** The replicate-all sweeper, in that peer mode. */
  readonly replicateAll: ReplicateAll | null;
  /** Unsent bytes of every connection and heavy HTTP response (`--max-unsent-bytes*`). */
  readonly unsent: UnsentBudget;
  private readonly meshHooks: MeshHooks;
  /** The hooks: the relay's webhooks' and the backend's (createRelay `hooks`), each with its own budget. */
  private readonly hooks: HookRunner[];
  private readonly beforeStoreClose: (() => Promise<void>) | undefined;
  private readonly fencedWrites: FencedWriteForwarder | undefined;
  /** On a cluster relay (a shared store): whether its database can give quorum durability. */
  private readonly quorum: QuorumSupport | undefined;
  /** Sessions of each address's multiplexed sockets (`--max-sessions-per-address`). */
  private readonly addressSessions: AddressSessions;
  private readonly connections = new Set<RelayConnection | LockConnection | MeshConnection | MuxConnection | PeerMuxSocket>();
  private closing = false;
  /** `--auth-recheck-interval-ms`: client sockets' permissions decided again (live permissions). */
  private readonly rechecks: PermissionRechecks;
  /** Documents opened by `openDocument`, closed by `close`. */
  private readonly serverDocuments: OpenServerDocuments;
  /** Appends waiting for storage to be reachable again: /readyz is 503 meanwhile. */
  readonly storageOutage: StorageOutage;

  constructor(deps: RelayDeps) {
    super();
    this.store = deps.store;
    this.access = deps.access;
    this.metrics = deps.metrics;
    this.logger = deps.logger;
    this.options = deps.options;
    this.locks = deps.locks;
    this.beforeStoreClose = deps.beforeStoreClose;
    this.addressSessions = new AddressSessions(deps.options.maxSessionsPerAddress);
    this.storageOutage = new StorageOutage(deps.metrics);
    // An open relay grants write on everything: nothing to decide again.
    this.rechecks = new PermissionRechecks(deps.access.mode === 'open' ? 0 : deps.options.authRecheckIntervalMs);
    this.unsent = new UnsentBudget(
      { maxTotal: deps.options.maxUnsentBytes, maxPerAddress: deps.options.maxUnsentBytesPerAddress, graceMs: deps.options.slowConsumerGraceMs },
      deps.metrics,
    );
    this.hooks = [
      // The webhooks' hooks only queue events: their calls are bounded by the documents and
      // sessions there are, not dropped under the app's bound (a dropped one is a lost event).
      ...(deps.webhookHooks ? [new HookRunner(deps.webhookHooks, deps.options.hookTimeoutMs, deps.metrics, deps.logger, Number.MAX_SAFE_INTEGER, 'webhooks.')] : []),
      ...(deps.options.hooks ? [new HookRunner(deps.options.hooks, deps.options.hookTimeoutMs, deps.metrics, deps.logger, deps.options.maxHookCallsInFlight)] : []),
    ];
    this.registry = new DocRegistry(
      {
        hooks: this.hooks,
        clusterPreviews: deps.options.clusterPreviews,
        changeTiming: { debounceMs: deps.options.changeDebounceMs, maxWaitMs: deps.options.changeMaxWaitMs },
        store: deps.store,
        compaction: deps.options.compaction,
        metrics: deps.metrics,
        logger: deps.logger,
        majority: Math.floor(deps.options.meshSize / 2) + 1,
        limits: deps.options,
        ownership: deps.access.mode !== 'open',
        outage: this.storageOutage,
        awareness: {
          maxStateBytes: deps.options.maxAwarenessStateBytes,
          maxStatesPerConnection: deps.options.maxAwarenessStatesPerConnection,
          maxStatesPerDoc: deps.options.maxAwarenessStatesPerDoc,
          maxReservationsPerAddress: deps.options.maxAwarenessReservationsPerAddress,
        },
      },
      deps.options.idleTimeoutMs,
    );
    this.serverDocuments = new OpenServerDocuments(this.registry, () => this.closing);
    this.mesh = new PeerMesh({
      relayId: deps.options.relayId,
      peers: deps.options.peers,
      credential: deps.credential,
      registry: this.registry,
      metrics: deps.metrics,
      logger: deps.logger,
      sendBufferLimit: deps.options.sendBufferLimit,
      slowConsumerGraceMs: deps.options.slowConsumerGraceMs,
      maxQueuedBytes: deps.options.maxMessageBytes * 2,
      mux: deps.options.mux,
      // A peer's sessions on the socket this relay dialled are its document links, served as
      // those on the socket it dialled to us (`connectMux`).
      serve: (channel, docName, grant, peerId) => new RelayConnection(channel, docName, grant, this.connectionDeps(undefined), peerId),
    });
    this.replicateAll =
      deps.options.peerMode === 'replicate-all'
        ? new ReplicateAll({ mesh: this.mesh, registry: this.registry, store: deps.store, logger: deps.logger, intervalMs: deps.options.replicateIntervalMs })
        : null;
    this.quorum = isSharedDocStore(deps.store) ? new SyncReplicationCheck(deps.store) : undefined;
    this.fencedWrites = deps.options.lockAuthority
      ? new FencedWriteForwarder({
          url: deps.options.lockAuthority,
          relayId: deps.options.relayId,
          credential: deps.credential,
          timeoutMs: deps.options.lockTimeoutMs,
          outbound: { sendBufferLimit: deps.options.sendBufferLimit, slowConsumerGraceMs: deps.options.slowConsumerGraceMs },
          logger: deps.logger,
        })
      : undefined;
    this.meshHooks = {
      relayId: deps.options.relayId,
      inboundOpened: (peerId, conn) => this.mesh.inboundOpened(peerId, conn),
      inboundClosed: (peerId, conn) => this.mesh.inboundClosed(peerId, conn),
    };
  }

  /** Connects to the peer relays (once the relay listens, so peers can connect back). */
  startMesh(): void {
    this.replicateAll?.start();
    this.mesh.start();
  }

  /** Deletes document `name` (see deleteDocument: its sessions close with 'document-deleted'). */
  deleteDocument(name: string, identity: string | undefined): Promise<DeletedDocument> {
    return deleteDocument({ store: this.store, registry: this.registry, metrics: this.metrics, hooks: this.hooks }, name, identity);
  }

  /** Opens `name` for a server-side writer: see ServerDocument. Rejects while the relay closes. */
  openDocument(name: string, options?: OpenDocumentOptions): Promise<ServerDocument> {
    return this.serverDocuments.openDocument(name, options);
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /**
   * Serves one authorized socket for `docName`. Feed it frames with `receive`, and `onClosed`
   * when it closes. `peerId`: the relay id a peer relay's link named in its request (honoured
   * only with a relay credential). `address`: the client's, for its share of the unsent-bytes
   * budget (leave it out for peer relays). `principal`: the client's credential the grant was
   * decided from, kept current (`token-refresh`) and decided again (live permissions, see
   * LiveCredential); a relay credential's connection is not.
   */
  connect(socket: RelaySocket, docName: string, grant: AccessGrant, peerId?: string, address?: string, principal?: Principal): RelayConnection {
    const deps = this.connectionDeps(address);
    let live: LiveCredential | null = null;
    const client = principal !== undefined && !grant.relay;
    const conn = new RelayConnection(new AccountedChannel(socket, deps.options), docName, grant, client ? { ...deps, refreshToken: (token) => live!.refresh(token), ended: () => live?.ended() } : deps, peerId);
    if (client) {
      live = this.liveCredential(principal, {
        targets: () => [conn],
        replaced: () => {}, // its grant's expiry comes with the re-check (regrant)
        refused: (err) => conn.fail(err),
        get closed() {
          return conn.closed;
        },
      });
    }
    this.connections.add(conn);
    return conn;
  }

  /** A client socket's credential, kept current and re-checked every `--auth-recheck-interval-ms`. */
  private liveCredential(principal: Principal, owner: LiveCredentialOwner): LiveCredential {
    const live = new LiveCredential(
      principal,
      { access: this.access, metrics: this.metrics, logger: this.logger, minRefreshIntervalMs: this.options.tokenRefreshMinIntervalMs, ended: (l) => this.rechecks.remove(l) },
      owner,
    );
    this.rechecks.add(live);
    return live;
  }

  /** What a document connection from `address` (undefined: a peer relay) is served with. */
  private connectionDeps(address: string | undefined): ConnectionDeps {
    return {
      mesh: this.meshHooks,
      fencedWrites: this.fencedWrites,
      quorum: this.quorum,
      registry: this.registry,
      locks: this.locks,
      metrics: this.metrics,
      logger: this.logger,
      options: { ...this.outboundOptions(address), maxQueuedBytes: this.options.maxMessageBytes * 2 },
      onRelayClose: (c, code, reason) => this.emit('connection-closed', { docName: c.docName, code, reason }),
      hooks: this.hooks,
    };
  }

  /**
   * Serves one multiplexed socket, authenticated as `principal` (see MuxConnection): its
   * documents are served as plain connections are, one session each. `address`: as `connect`.
   */
  connectMux(socket: RelaySocket, principal: Principal, address?: string, peerId?: string): MuxConnection | PeerMuxSocket {
    // A peer relay's socket (relay credential, relay named in the request): its sessions are its
    // document links, served with peer trust, and the socket is the pair's (PeerMuxSocket).
    if (principal.relay && peerId) return this.connectPeerMux(socket, principal, peerId);
    const deps = this.connectionDeps(address);
    // Once per socket, and with Object.assign: V8 (Node 20) makes a spread followed by more keys
    // a slow object (~3 µs each), which would be paid per session opened.
    const watched: Pick<ConnectionDeps, 'expiryWatchedBySocket'> = { expiryWatchedBySocket: principal.expiresAt !== undefined };
    const sessionDeps: ConnectionDeps = Object.assign({}, deps, watched);
    const conn = new MuxConnection(socket, principal, {
      access: this.access,
      metrics: this.metrics,
      logger: this.logger,
      outbound: deps.options,
      maxSessions: this.options.maxSessionsPerSocket,
      maxQueuedBytes: deps.options.maxQueuedBytes,
      maxMessageBytes: this.options.maxMessageBytes,
      addressSessions: this.addressSessions,
      maxRefusedOpens: this.options.maxRefusedOpensPerSocket,
      address,
      // Not in `connections`: the socket closes its sessions (and is closed on shutdown).
      // A JWT's expiry is the socket's to watch (MuxConnection); an authorization callback's is each session's.
      openDoc: (channel, docName, grant) => new RelayConnection(channel, docName, grant, sessionDeps),
      // The lock endpoint's connection, for the socket's principal; its expiry is the socket's to watch.
      openLocks: (channel, grant) => servedLocks(new LockConnection(channel, this.locks, this.lockDeps(grant, address))),
      helloExtras: [LOCK_BACKEND_CAPABILITY + this.locks.backend.kind],
      liveCredential: (owner) => this.liveCredential(principal, owner),
    });
    this.connections.add(conn);
    return conn;
  }

  /**
   * A peer relay's multiplexed socket. Its credential's expiry closes it (4401), as it closes a
   * peer's plain document link; the peer dials again with a fresh one.
   */
  private connectPeerMux(socket: RelaySocket, principal: Principal, peerId: string): PeerMuxSocket {
    const channel = new AccountedChannel(socket, this.outboundOptions(undefined));
    let cancelExpiry: (() => void) | null = null;
    const conn = new PeerMuxSocket(channel, channel, false, peerId, null, {
      relayId: this.options.relayId,
      metrics: this.metrics,
      logger: this.logger,
      maxQueuedBytes: this.options.maxMessageBytes * 2,
      grantFor: (docName) => {
        // A relay credential's grant is decided at once (CallbackAccess asks no callback for it).
        const grant = this.access.authorizeDoc(principal, docName);
        if (grant instanceof Promise) throw new CapsyncError('internal', 'a relay credential must be authorized synchronously');
        return grant;
      },
      serve: (session, docName, grant, peer) => new RelayConnection(session, docName, grant, this.connectionDeps(undefined), peer),
      helloed: (s) => this.mesh.peerSocketOpened(s),
      ended: (s) => {
        cancelExpiry?.();
        this.mesh.peerSocketClosed(s);
      },
    });
    if (principal.expiresAt !== undefined) {
      cancelExpiry = onCredentialExpiry(principal.expiresAt, () => conn.fail(new CapsyncError('unauthorized', 'token expired')));
    }
    this.connections.add(conn);
    return conn;
  }

  /** The send-buffer bounds of a connection from `address` (see SendBuffer). */
  private outboundOptions(address: string | undefined): SendBufferOptions {
    return { sendBufferLimit: this.options.sendBufferLimit, slowConsumerGraceMs: this.options.slowConsumerGraceMs, budget: this.unsent, address };
  }

  /** Serves a peer relay's control link (see MeshConnection). */
  connectMesh(socket: RelaySocket): MeshConnection {
    const conn = new MeshConnection(socket, this.options.relayId, this.outboundOptions(undefined));
    this.connections.add(conn);
    return conn;
  }

  /**
   * Serves one authorized lock connection (see LockConnection). `address`: the client's, which
   * leases of identities without a token `sub` count against (`--max-leases-per-address`).
   */
  connectLocks(socket: RelaySocket, grant: AccessGrant, address?: string): LockConnection {
    const conn = new LockConnection(new AccountedChannel(socket, this.outboundOptions(address)), this.locks, this.lockDeps(grant, address));
    this.connections.add(conn);
    return conn;
  }

  /** Who a lock connection (a socket, or a multiplexed socket's lock session) acts for: see ConnectionIdentity. */
  private lockDeps(grant: AccessGrant, address: string | undefined): LockConnectionDeps {
    return {
      metrics: this.metrics,
      logger: this.logger,
      ...(address !== undefined ? { address } : {}),
      ...(grant.subject ? { subject: grant.subject } : {}),
      ...(grant.relay ? { relay: true } : {}),
      ...(grant.expiresAt !== undefined ? { expiresAt: grant.expiresAt } : {}),
    };
  }

  /** Forget a connection whose socket closed. */
  disconnected(conn: RelayConnection | LockConnection | MeshConnection | MuxConnection | PeerMuxSocket): void {
    conn.onClosed();
    this.connections.delete(conn);
  }

  /**
   * Graceful stop: closes every connection with GoingAway and every server document (its edits
   * committed), waits until every accepted update is committed, then closes storage.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.unsent.stop();
    this.rechecks.stop();
    for (const conn of this.connections) conn.close(CloseCode.GoingAway, closeReasonFor('shutting-down', 'relay is shutting down'));
    this.connections.clear();
    await this.serverDocuments.closeAll();
    this.replicateAll?.close();
    this.mesh.close();
    await this.locks.close();
    await this.registry.closeAll();
    await this.beforeStoreClose?.();
    await this.store.close();
  }
}
