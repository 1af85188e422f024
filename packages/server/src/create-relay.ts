import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { MemoryDocStore, type DocStore } from '@capsync/core';
import { JwtAccess, OpenAccess, type AccessControl } from './auth/access.js';
import { CallbackAccess } from './auth/callback-access.js';
import { relayCredential } from './auth/relay-credential.js';
import { redactUrl } from './auth/url-token.js';
import { resolveOptions, type RelayOptions, type ResolvedRelayOptions } from './config.js';
import { createHttpApp } from './http/app.js';
import { ConnectionLimits } from './http/connection-limits.js';
import { startMetricsServer, type MetricsServer } from './http/metrics-endpoint.js';
import { OriginPolicy } from './http/origin-policy.js';
import { attachWebSocketEndpoint, underPrefix, webSocketEndpoint, type UpgradeHandler } from './http/websocket-endpoint.js';
import { createLogger, type Logger } from './logger.js';
import { RelayMetrics } from './metrics.js';
import { EmbeddedLockBackend } from './locks/embedded-backend.js';
import type { LockBackend } from './locks/lock-backend.js';
import { LockService } from './locks/lock-service.js';
import { MemoryLockStore, type LockStore } from './locks/lock-store.js';
import { Relay } from './relay/relay.js';
import type { OpenDocumentOptions, ServerDocument } from './relay/server-document.js';
import { relayWebhooks } from './webhooks/relay-webhooks.js';
import { composeHooks } from './hooks/compose-hooks.js';
import { SqliteWorkerStore } from './storage/sqlite-worker-store.js';

/** A running relay. */
export interface RelayHandle {
  /** WebSocket base URL, e.g. ws://127.0.0.1:4000 (documents at `${url}/${name}`). */
  url: string;
  /** HTTP base URL, e.g. http://127.0.0.1:4000. */
  httpUrl: string;
  /** With `metricsPort`: where metrics are served instead (http://127.0.0.1:<port>/metrics). */
  metricsUrl?: string;
  port: number;
  /** The relay core, for embedding and tests. */
  relay: Relay;
  /**
   * The HTTP API as a request handler: with `server`, mount it under the relay's `path` in the
   * app (`app.use('/collab', relay.http)` in express; it sees paths without the prefix).
   */
  http: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /**
   * Takes a WebSocket upgrade whose path is under the relay's `path` (true), or leaves it to
   * another handler (false): for a server the relay is not attached to (other frameworks).
   */
  handleUpgrade: UpgradeHandler;
  /**
   * A live document for a backend job, without a WebSocket: edits to its `doc` are validated,
   * stored, acknowledged and sent to every client like a client's (see ServerDocument).
   */
  openDocument(name: string, options?: OpenDocumentOptions): Promise<ServerDocument>;
  /** Stops accepting, closes connections (1001), commits pending writes, closes storage. */
  close(): Promise<void>;
}

/** Starts a relay: HTTP API + WebSocket endpoint on one port. `port: 0` picks a free port. */
export async function createRelay(options: RelayOptions = {}): Promise<RelayHandle> {
  const resolved = resolveOptions(options);
  const logger = options.logger ?? createLogger(options.logLevel ?? 'silent');
  const metrics = new RelayMetrics();
  const store = await openStore(resolved, metrics);
  const tokens: AccessControl = resolved.authSecret || resolved.authPublicKeys.length > 0 || resolved.authJwks
    ? new JwtAccess({
        secret: resolved.authSecret,
        publicKeys: resolved.authPublicKeys,
        jwksUrl: resolved.authJwks,
        jwksCooldownMs: resolved.authJwksCooldownMs,
        docsClaim: resolved.authDocsClaim,
        ...(resolved.authIssuer ? { issuer: resolved.authIssuer } : {}),
        ...(resolved.authAudience ? { audience: resolved.authAudience } : {}),
        maxTokenLifetimeMs: resolved.maxTokenLifetimeMs,
      })
    : new OpenAccess({ peerToken: resolved.peerToken });
  // With an authorization callback the app decides for clients; relay credentials stay the tokens'.
  const access: AccessControl = resolved.authorize ? new CallbackAccess(resolved.authorize, tokens, resolved.authorizeTimeoutMs) : tokens;
  let backend: LockBackend;
  try {
    backend = await openLockBackend(resolved, store, logger);
  } catch (err) {
    await store.close();
    throw err;
  }
  const locks = new LockService(backend, metrics, logger, resolved.lockTimeoutMs, {
    maxLeasesPerIdentity: resolved.maxLeasesPerIdentity,
    maxLeasesPerAddress: resolved.maxLeasesPerAddress || Number.MAX_SAFE_INTEGER,
  });
  let httpUrl = (): string => '';
  const webhooks = relayWebhooks(resolved, store, metrics, logger, () => httpUrl());
  if (webhooks) resolved.hooks = composeHooks(webhooks.hooks, resolved.hooks);
  const relay = new Relay({
    store,
    access,
    metrics,
    logger,
    options: resolved,
    locks,
    credential: relayCredential(resolved),
    ...(webhooks ? { beforeStoreClose: () => webhooks.dispatcher.close() } : {}),
  });

  const origins = new OriginPolicy(resolved.allowedOrigins, access.mode !== 'open', resolved.host);
  const limits = new ConnectionLimits(resolved.maxConnections, resolved.maxConnectionsPerAddress, metrics);
  const api = limits.guard(createHttpApp(relay, origins));
  const { wss, handleUpgrade } = webSocketEndpoint(relay, { origins, limits }, resolved.path);
  // Attached to the app's server: its port, its listening, its close; the relay takes the
  // upgrades under its path and the app mounts `http`. Else a server of its own.
  const attached = options.server;
  const server = attached ?? http.createServer(ownServerHandler(api, resolved.path));
  if (!attached) server.on('connection', (socket) => limits.admit(socket));
  // On its own server nothing else takes an upgrade outside the relay's path: refused (404).
  const detach = attachWebSocketEndpoint(server, handleUpgrade, !attached);
  let metricsServer: MetricsServer | undefined;
  try {
    if (!attached) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(resolved.port, resolved.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    }
    if (resolved.metricsPort !== undefined) metricsServer = await startMetricsServer(relay, resolved.metricsPort);
  } catch (err) {
    detach();
    if (!attached) server.close();
    await locks.close();
    await store.close();
    throw err;
  }
  // An attached server may listen later: its address is read when asked.
  const address = (): { port: number; host: string } => {
    const a = server.address() as AddressInfo | null;
    return { port: a?.port ?? 0, host: attached ? urlHost(a?.address ?? '127.0.0.1') : urlHost(resolved.host) };
  };
  const port = address().port;
  httpUrl = () => `http://${address().host}:${address().port}${resolved.path}`;
  relay.startMesh();
  webhooks?.dispatcher.start();
  const storage = resolved.postgres ? 'postgres' : typeof resolved.storage === 'string' ? resolved.storage : 'custom';
  const database = storage === 'sqlite' ? sqlitePath(resolved) : storage === 'postgres' ? redactUrl(resolved.postgres) : undefined;
  logger.info(
    { port, host: resolved.host, storage, locks: backend.kind, relayId: resolved.relayId, peers: resolved.peers.map(redactUrl), peerMode: resolved.peerMode, ...(database ? { database } : {}) },
    'relay listening',
  );
  if ((resolved.authPublicKeys.length > 0 || resolved.authJwks) && !resolved.authAudience) {
    // An identity provider signs tokens for every API of the tenant: without an audience, tokens
    // minted for another of them are taken here too.
    logger.warn("tokens of an identity provider are accepted without --auth-audience: set it to this relay's audience, or tokens minted for the provider's other APIs pass too");
  }
  if (access.mode === 'open') logger.warn('no auth configured: the relay is OPEN, anyone who can reach it may read and write every document');

  let closing: Promise<void> | null = null;
  return {
    get url() {
      const { host, port } = address();
      return `ws://${host}:${port}${resolved.path}`;
    },
    get httpUrl() {
      const { host, port } = address();
      return `http://${host}:${port}${resolved.path}`;
    },
    ...(metricsServer ? { metricsUrl: metricsServer.url } : {}),
    get port() {
      return address().port;
    },
    relay,
    http: api,
    handleUpgrade,
    openDocument: (name, opts) => relay.openDocument(name, opts),
    close: () =>
      (closing ??= (async () => {
        detach();
        // The app's server is the app's to close; the relay closes its own sockets.
        const stopped = attached ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()));
        await relay.close();
        wss.close();
        if (!attached) server.closeAllConnections();
        await Promise.all([stopped, metricsServer?.close()]);
        logger.info('relay stopped');
      })()),
  };
}

/** The relay's own server: the API under its path prefix (taken off), 404 outside it. */
function ownServerHandler(api: (req: http.IncomingMessage, res: http.ServerResponse) => void, prefix: string): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  if (!prefix) return api;
  return (req, res) => {
    const url = underPrefix(req.url ?? '/', prefix);
    if (url === null) {
      res.writeHead(404, { 'Content-Type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify({ error: { code: 'not-found', message: `the relay serves under ${prefix}` } }));
      return;
    }
    req.url = url;
    api(req, res);
  };
}

/**
 * SQLite runs in a worker thread so commits and fsyncs never block the relay's event loop.
 * PostgreSQL's driver is loaded only when it is configured: a relay on SQLite never loads `pg`.
 */
async function openStore(o: ResolvedRelayOptions, metrics: RelayMetrics): Promise<DocStore> {
  if (o.postgres) {
    const { PostgresDocStore } = await import('./storage/postgres-store.js');
    const store = await PostgresDocStore.open(o.postgres, {
      queryTimeoutMs: o.postgresTimeoutMs,
      connectTimeoutMs: Math.min(5_000, o.postgresTimeoutMs),
      onListening: (up) => metrics.clusterListening.set(up ? 1 : 0),
      onPreviews: (outcome, updates) => metrics.clusterPreviews.inc({ outcome }, updates),
    });
    metrics.poolInUseSource = () => store.poolInUse;
    return store;
  }
  if (o.storage === 'memory') return new MemoryDocStore();
  if (o.storage === 'sqlite') return SqliteWorkerStore.open(sqlitePath(o), { synchronous: o.sqliteSync });
  return o.storage;
}

/**
 * The lock authority: a given backend, etcd when endpoints are configured, a forwarding one
 * with `lockAuthority`, the PostgreSQL one on a PostgreSQL relay (the documents' database is
 * the authority every relay sharing it shares), else the embedded one, persisting in the
 * relay's SQLite database (in memory for memory or custom storage).
 */
async function openLockBackend(o: ResolvedRelayOptions, store: DocStore, logger: Logger): Promise<LockBackend> {
  if (o.lockBackend) return o.lockBackend;
  if (o.etcd.length > 0) {
    // Loaded only when configured: etcd3 brings grpc, which the embedded default does not need.
    const { EtcdLockBackend } = await import('./locks/etcd-backend.js');
    return EtcdLockBackend.connect({ endpoints: o.etcd, opTimeoutMs: o.lockTimeoutMs, logger });
  }
  if (o.lockAuthority) {
    // Another relay's embedded backend is the mesh's one authority: forward every lock
    // operation and fencing check there (connects in the background; never blocks startup).
    const { ForwardingLockBackend } = await import('./locks/forwarding-backend.js');
    return ForwardingLockBackend.connect({
      url: o.lockAuthority,
      token: relayCredential(o),
      opTimeoutMs: o.lockTimeoutMs,
      logger,
      relayId: o.relayId,
      outbound: { sendBufferLimit: o.sendBufferLimit, slowConsumerGraceMs: o.slowConsumerGraceMs },
    });
  }
  if (o.postgres) {
    // Loaded only when configured, as the PostgreSQL store is.
    const { PostgresLockBackend } = await import('./locks/postgres-backend.js');
    return PostgresLockBackend.open({ url: o.postgres, opTimeoutMs: o.lockTimeoutMs, logger });
  }
  return EmbeddedLockBackend.open(embeddedLockStore(store));
}

/** The embedded authority's store: the relay's SQLite database, else memory (a PostgreSQL relay has its own backend). */
function embeddedLockStore(store: DocStore): LockStore {
  return store instanceof SqliteWorkerStore ? store.locks : new MemoryLockStore();
}

function sqlitePath(o: ResolvedRelayOptions): string {
  return path.join(o.dataDir, 'capsync.db');
}

function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
