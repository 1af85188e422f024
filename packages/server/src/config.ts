import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { authWebhook } from './auth/auth-webhook.js';
import type { AuthorizeCallback } from './auth/callback-access.js';
import { MAX_HOOK_CALLS_IN_FLIGHT, type RelayHooks } from './hooks/relay-hooks.js';
import { resolveWebhookOptions, type ResolvedWebhookOptions, type WebhookOptions } from './webhooks/webhook-options.js';
import { DEFAULT_COMPACTION_POLICY, type CompactionPolicy, type DocStore } from '@capsync/core';
import type { LockBackend } from './locks/lock-backend.js';
import type { Logger } from './logger.js';

/** Options of `createRelay`; the CLI maps flags and CAPSYNC_* variables onto these. */
// Over ~400 lines (2026-12-07): every relay option with its contract, its default and its check,
// in one place, as the README's flag table is; split by area (storage, auth, limits) next.
export interface RelayOptions {
  /**
   * Attach to this existing server (an app's, with its own routes) instead of listening on a
   * port of the relay's own: the relay takes the WebSocket upgrades under `path`, and the app
   * mounts the HTTP API (`RelayHandle.http`) under the same path. `port` and `host` are then
   * unused; the app listens and closes its server.
   */
  server?: import('node:http').Server;
  /**
   * Path prefix of everything the relay serves ("/collab": documents at /collab/<name>, the API
   * at /collab/v1/..., health at /collab/healthz). Default "" (the root).
   */
  path?: string;
  /** TCP port; 0 picks a free one. Default 4000. */
  port?: number;
  /** Interface to listen on. Default '127.0.0.1'; use '0.0.0.0' to accept remote clients. */
  host?: string;
  /**
   * 'sqlite' (default, durable, under `dataDir`), 'memory' (lost on exit), or your own DocStore.
   * Ignored when `postgres` is set.
   */
  storage?: 'sqlite' | 'memory' | DocStore;
  /**
   * A PostgreSQL URL (postgres://user:password@host:5432/database): documents live in that
   * database instead of SQLite (the schema is created or migrated at startup), and it is the lock
   * authority (PostgresLockBackend) unless `lockBackend`, `etcd` or `lockAuthority` is given.
   * Default none.
   */
  postgres?: string;
  /** Directory of the SQLite database (capsync.db). Default './data'. */
  dataDir?: string;
  /** SQLite commit durability: 'full' fsyncs every commit (default), 'normal' survives process crashes only. */
  sqliteSync?: 'full' | 'normal';
  /**
   * With `postgres`: how long a statement may go unanswered before the database counts as
   * unreachable (writes are then tried again and not acknowledged meanwhile; /readyz answers
   * 503), and how often the connection that listens to the cluster's notes proves it is alive
   * (half of it, at most 5 s). Default 10000.
   */
  postgresTimeoutMs?: number;
  /**
   * With `postgres`: send what a client writes to the other relays' clients before its commit (a
   * preview), so they get it as fast as this relay's own clients. The trade-off: an edit a client
   * of another relay builds on a preview waits there (unacknowledged) until the preview commits,
   * so while this relay is cut from the database mid-commit, those edits wait for it. Default false.
   */
  clusterPreviews?: boolean;
  /** HMAC secret for JWT auth; without one the relay is open to everyone. */
  authSecret?: string;
  /**
   * Public keys of an identity provider that signs the tokens (RS*, PS*, ES*, EdDSA): PEM text, a
   * JWK or a JWK Set as JSON text (see JwtKeySources). With or without `authSecret`.
   */
  authPublicKey?: string | string[];
  /** URL of an identity provider's JWK Set (its `jwks_uri`): keys fetched, cached and refreshed on rotation. */
  authJwks?: string;
  /** Least time between two fetches of `authJwks` (a token with an unknown key id fetches again). Default 30000. */
  authJwksCooldownMs?: number;
  /**
   * Where the document permissions are in a token: a claim name, or a dot-separated path into
   * nested claims; the value a map of name to 'read'|'write', `{ read: [...], write: [...] }` or
   * a list of names (write). Default `docs`.
   */
  authDocsClaim?: string;
  /**
   * Decide access per token and document in the app (see CallbackAccess for the contract):
   * instead of verifying JWTs, the relay asks this for every document a client opens. Relay
   * credentials (`authSecret`, `peerToken`) are still checked by the relay. Default none.
   */
  authorize?: AuthorizeCallback;
  /** How long `authorize` may take before the document is refused for now ('unavailable', 1013). Default 5000. */
  authorizeTimeoutMs?: number;
  /** `authorize` by an HTTP endpoint of the app (see authWebhook): the relay POSTs {token, docName}. Default none. */
  authWebhook?: string;
  /** How long an `authWebhook` answer is kept per token and document (0: ask every time). Default 60000. */
  authWebhookCacheMs?: number;
  /**
   * Live permissions: every this many ms each open client session's permission is decided again
   * with its current credential (a JWT's claims and expiry; `authorize`/`authWebhook` asked
   * again, through the webhook's cache): downgraded to read live, or closed with 4412
   * `permission-revoked`; a session whose permission 3 re-checks in a row could not decide (the
   * callback failing) is closed with 1013 `unavailable` (see PermissionRechecks, LiveCredential).
   * 0 turns it off. Default 60000.
   */
  authRecheckIntervalMs?: number;
  /**
   * A socket's `token-refresh` messages are taken at most this often (each costs a verification
   * and a decision per open document); sooner ones wait, only the latest. Default 1000 (the
   * capsync client never refreshes sooner).
   */
  tokenRefreshMinIntervalMs?: number;
  /** Required `iss` claim, if set. */
  authIssuer?: string;
  /** Required `aud` claim, if set. */
  authAudience?: string;
  /** Largest accepted frame or HTTP body in bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** Bytes a connection may have unsent before it is closed as a slow consumer. Default 16 MiB. */
  sendBufferLimit?: number;
  /** How long a connection may stay over `sendBufferLimit` before it is closed. Default 5 s. */
  slowConsumerGraceMs?: number;
  /**
   * Unsent bytes of the whole relay: every connection's send buffer and every document HTTP
   * response not yet written out. Past it, the connections and responses holding the most
   * that have not read for `slowConsumerGraceMs` are closed as slow consumers. Default 1 GiB; 0 = no cap.
   */
  maxUnsentBytes?: number;
  /**
   * Unsent bytes to one client address (same accounting; peer relays are not counted here).
   * Past it, that address's non-readers are closed as above, and its document GETs answered
   * 429; past twice it, the connection that goes over is closed at once. Default 256 MiB; 0 = no cap.
   */
  maxUnsentBytesPerAddress?: number;
  /** Unload a document this long after its last connection left. Default 30 s. */
  idleTimeoutMs?: number;
  /** The backend's hooks (see RelayHooks for their contract). Default none. */
  hooks?: RelayHooks;
  /** Signed webhooks, queued durably in the relay's storage and retried (see WebhookOptions). Default none. */
  webhooks?: WebhookOptions;
  /** How long a hook may run before the relay goes on without it (counted as a timeout). Default 5000. */
  hookTimeoutMs?: number;
  /** Hook calls running at once, all hooks and documents; past it a call is dropped (counted). Default 1000. */
  maxHookCallsInFlight?: number;
  /** `onChange`: quiet time after a document's last change before it is called. Default 1000. */
  changeDebounceMs?: number;
  /** `onChange`: longest wait after a change while changes go on. Default 10000. */
  changeMaxWaitMs?: number;
  /** Merge the update log into a snapshot past these thresholds. Default 500 updates or 1 MiB. */
  compaction?: Partial<CompactionPolicy>;
  /**
   * A directory of static files (a web app) served at `/` over HTTP, for example the built
   * editor example. WebSocket upgrades and the API routes take precedence. Default none.
   */
  staticDir?: string;
  /**
   * etcd client URLs (http://host:2379, ...): use an etcd cluster as the lock authority
   * instead of this relay's embedded one (or the PostgreSQL database with `postgres`).
   */
  etcd?: string[];
  /** Your own lock authority (tests, custom deployments); overrides `etcd`. */
  lockBackend?: LockBackend;
  /**
   * How long a lock operation may take to reach the lock authority before it is answered
   * 'unavailable' (an acquire gets its `waitMs` on top). Default 2000 ms.
   */
  lockTimeoutMs?: number;
  /**
   * Other relays of the mesh (ws://host:port, ...): documents are synced with them over the
   * same protocol, authenticated with the relay credential (`peerToken`). Default none.
   */
  peers?: string[];
  /**
   * 'on-demand' (default): sync the documents this relay has loaded (its clients have them
   * open). 'replicate-all': also sweep every document the peers and this relay store, so this
   * relay is a full backup replica.
   */
  peerMode?: 'on-demand' | 'replicate-all';
  /** This relay's name in the mesh (logs, metrics, quorum). Default: a random id per start. */
  relayId?: string;
  /**
   * The credential this relay presents to its peers. Default: with `authSecret`, a short-lived
   * JWT minted from it (peers of one mesh share the secret). Open relays (no `authSecret`)
   * must share one: it is what they present and the only credential they trust as a peer.
   */
  peerToken?: string;
  /**
   * Relays in the mesh, this one included, for `quorum` durability (a majority of it).
   * Default: the number of `peers` plus one.
   */
  meshSize?: number;
  /** How often a replicate-all relay sweeps every document. Default 60 s. */
  replicateIntervalMs?: number;
  /**
   * A relay (ws://host:port) whose embedded lock backend is the lock authority of the mesh:
   * this relay forwards lock requests and fencing checks there, naming the identity of each
   * client. Needs `authSecret` or `peerToken` (shared with the authority): the authority
   * trusts the named identities only from a relay credential. Ignored with `etcd` or `lockBackend`.
   */
  lockAuthority?: string;
  // ---- bounds on what a client may cost the relay (see README "Limits") ----
  /** Leases one identity may hold at once (the token's `sub`; the client on an open relay). Default 100. */
  maxLeasesPerIdentity?: number;
  /**
   * Leases held at once by the identities without a token `sub` (owner keys, connections: on an
   * open relay, or with a token without `sub`) acquiring from one client address, together: a
   * client cannot multiply `maxLeasesPerIdentity` by opening connections or making fresh owner
   * keys. Peer relays' forwarded requests do not count. Default 1000 (ten identities' worth,
   * for clients behind one NAT); 0 = no cap (behind a proxy every client has its address).
   */
  maxLeasesPerAddress?: number;
  /**
   * Close a connection that sent nothing, not even a pong to the relay's WebSocket pings (sent
   * every half of this), for this long. Default 60 s; 0 disables it.
   */
  connectionTimeoutMs?: number;
  /** Largest awareness state one client id may set, in bytes of its JSON. Default 16 KiB. */
  maxAwarenessStateBytes?: number;
  /** Awareness client ids one connection may set. Default 16. */
  maxAwarenessStatesPerConnection?: number;
  /** Awareness states one document holds, over all its connections. Default 1000. */
  maxAwarenessStatesPerDoc?: number;
  /**
   * Awareness id reservations (see AwarenessReservations) one client address may hold per
   * document for identities that are not a token's `sub` (owner keys cost nothing to make up).
   * Default 64.
   */
  maxAwarenessReservationsPerAddress?: number;
  /** Yjs client ids one update may introduce to a document (peer relays are exempt). Default 10,000. */
  maxNewClientsPerUpdate?: number;
  /** Yjs client ids one document may hold (past it, updates introducing more are refused). Default 100,000. */
  maxClientsPerDoc?: number;
  /**
   * Yjs client ids of one document one identity may own (token `sub`; on an open relay, one
   * connection may introduce), so one user cannot fill `maxClientsPerDoc` and lock everyone
   * else out. Counted from the durable claims. Default 1,000: a Yjs client id is one session
   * (tab, page load) that wrote, so ~3 writing sessions a day on one document for a year.
   */
  maxClientsPerIdentity?: number;
  /** How long an update may wait for missing dependencies before it is refused. Default 30 s. */
  pendingTimeoutMs?: number;
  /**
   * Bytes of updates waiting for missing dependencies one document may hold in memory. Default
   * 64 KiB: Yjs re-merges all of it on many applies, so it is a per-update CPU cost.
   */
  maxPendingBytesPerDoc?: number;
  /** Updates of one connection that may wait for missing dependencies at a time. Default 16. */
  maxPendingUpdatesPerConnection?: number;
  /** Updates of one document that may wait for missing dependencies at a time. Default 64. */
  maxPendingUpdatesPerDoc?: number;
  /**
   * Origins allowed for browser WebSocket upgrades and state-changing HTTP requests (CORS is
   * answered for them); '*' allows any. Default: on an open relay its own origin (addressed by
   * IP literal, localhost or `host`: not trusted under other DNS names, see OriginPolicy) and
   * loopback origins only; with auth, any origin.
   */
  allowedOrigins?: string[];
  /** Longest token lifetime accepted (`exp` minus `iat`, or minus now); `exp` is required. Default 24 h. */
  maxTokenLifetimeMs?: number;
  /** Deepest nesting of shared types `GET /v1/docs/:name` renders as JSON, and `PATCH` writes (422 past it). Default 1000. */
  maxJsonDepth?: number;
  /**
   * Largest document (encoded state, bytes) `PATCH /v1/docs/:name` edits: each PATCH decodes a
   * copy of the document to build its update, so this is what one costs at most (429 past it).
   * Default 16 MiB.
   */
  maxPatchDocBytes?: number;
  /** Bearer token required by `GET /metrics`. Default none (open, unless `metricsPort` moves it). */
  metricsToken?: string;
  /** Serve `/metrics` on this separate port of 127.0.0.1 instead of the main port. Default none. */
  metricsPort?: number;
  /**
   * Open TCP connections in total: WebSocket (clients, lock clients; peer relays are exempt once
   * authorized) and HTTP. Past it a WebSocket is closed 1013 and an HTTP request answered 503.
   * Default 10,000; 0 = no cap.
   */
  maxConnections?: number;
  /** Open connections from one client address (the socket's; behind a proxy, the proxy's). Default 1000; 0 = no cap. */
  maxConnectionsPerAddress?: number;
  /**
   * Sessions (documents) one multiplexed socket (`/.capsync/mux`) may have open at once; an open
   * past it is refused on its own (4413). Default 2000.
   */
  maxSessionsPerSocket?: number;
  /**
   * Sessions (documents) the multiplexed sockets of one client address (the socket's; behind a
   * proxy, the proxy's) may have open together; an open past it is refused on its own (4413).
   * Peer relays are not counted. Default 2000; 0 = no cap.
   */
  maxSessionsPerAddress?: number;
  /**
   * Opens one multiplexed socket may have refused in a row (an accepted open starts the count
   * again); the next refusal closes the socket (4413). Default 100.
   */
  maxRefusedOpensPerSocket?: number;
  /**
   * Serve the multiplexed endpoint (`/.capsync/mux`: a client's documents over one socket).
   * false: refused with 4404 `invalid-doc-name` as by a relay that predates it, so clients use
   * a socket per document. Default true.
   */
  mux?: boolean;
  /** Structured logger; defaults to one at `logLevel`. */
  logger?: Logger;
  /** Log level of the default logger. Default 'silent' (the CLI uses 'info'). */
  logLevel?: string;
}

export interface ResolvedRelayOptions {
  port: number;
  path: string;
  host: string;
  storage: 'sqlite' | 'memory' | DocStore;
  postgres: string | undefined;
  dataDir: string;
  sqliteSync: 'full' | 'normal';
  clusterPreviews: boolean;
  postgresTimeoutMs: number;
  authSecret: string | undefined;
  authPublicKeys: string[];
  authJwks: string | undefined;
  authJwksCooldownMs: number;
  authDocsClaim: string | undefined;
  authorize: AuthorizeCallback | undefined;
  authorizeTimeoutMs: number;
  authRecheckIntervalMs: number;
  tokenRefreshMinIntervalMs: number;
  authIssuer: string | undefined;
  authAudience: string | undefined;
  maxMessageBytes: number;
  sendBufferLimit: number;
  slowConsumerGraceMs: number;
  maxUnsentBytes: number;
  maxUnsentBytesPerAddress: number;
  hooks: RelayHooks | undefined;
  hookTimeoutMs: number;
  maxHookCallsInFlight: number;
  webhooks: ResolvedWebhookOptions | undefined;
  changeDebounceMs: number;
  changeMaxWaitMs: number;
  idleTimeoutMs: number;
  compaction: CompactionPolicy;
  staticDir: string | undefined;
  etcd: string[];
  lockBackend: LockBackend | undefined;
  lockTimeoutMs: number;
  peers: string[];
  peerMode: 'on-demand' | 'replicate-all';
  relayId: string;
  peerToken: string | undefined;
  meshSize: number;
  replicateIntervalMs: number;
  lockAuthority: string | undefined;
  maxLeasesPerIdentity: number;
  /** 0 = no cap. */
  maxLeasesPerAddress: number;
  connectionTimeoutMs: number;
  maxAwarenessStateBytes: number;
  maxAwarenessStatesPerConnection: number;
  maxAwarenessStatesPerDoc: number;
  maxAwarenessReservationsPerAddress: number;
  maxNewClientsPerUpdate: number;
  maxClientsPerDoc: number;
  maxClientsPerIdentity: number;
  pendingTimeoutMs: number;
  maxPendingBytesPerDoc: number;
  maxPendingUpdatesPerConnection: number;
  maxPendingUpdatesPerDoc: number;
  /** Undefined: the default policy for the relay's mode (see RelayOptions.allowedOrigins). */
  allowedOrigins: string[] | undefined;
  maxTokenLifetimeMs: number;
  maxJsonDepth: number;
  maxPatchDocBytes: number;
  metricsToken: string | undefined;
  metricsPort: number | undefined;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  maxSessionsPerSocket: number;
  maxSessionsPerAddress: number;
  maxRefusedOpensPerSocket: number;
  mux: boolean;
}

export const DEFAULTS = {
  port: 4000,
  host: '127.0.0.1',
  dataDir: './data',
  postgresTimeoutMs: 10_000,
  maxMessageBytes: 16 * 1024 * 1024,
  sendBufferLimit: 16 * 1024 * 1024,
  slowConsumerGraceMs: 5_000,
  maxUnsentBytes: 1024 * 1024 * 1024,
  maxUnsentBytesPerAddress: 256 * 1024 * 1024,
  idleTimeoutMs: 30_000,
  lockTimeoutMs: 2_000,
  replicateIntervalMs: 60_000,
  maxLeasesPerIdentity: 100,
  maxLeasesPerAddress: 1000,
  connectionTimeoutMs: 60_000,
  maxAwarenessStateBytes: 16 * 1024,
  maxAwarenessStatesPerConnection: 16,
  maxAwarenessStatesPerDoc: 1000,
  maxAwarenessReservationsPerAddress: 64,
  maxNewClientsPerUpdate: 10_000,
  maxClientsPerDoc: 100_000,
  maxClientsPerIdentity: 1000,
  pendingTimeoutMs: 30_000,
  maxPendingBytesPerDoc: 64 * 1024,
  maxPendingUpdatesPerConnection: 16,
  maxPendingUpdatesPerDoc: 64,
  maxTokenLifetimeMs: 24 * 3600_000,
  maxJsonDepth: 1000,
  maxPatchDocBytes: 16 * 1024 * 1024,
  maxConnections: 10_000,
  maxConnectionsPerAddress: 1000,
  maxSessionsPerSocket: 2000,
  maxSessionsPerAddress: 2000,
  maxRefusedOpensPerSocket: 100,
  mux: true,
} as const;

export function resolveOptions(o: RelayOptions): ResolvedRelayOptions {
  const positive = (name: string, v: number | undefined, d: number, allowZero = false): number => {
    const value = v ?? d;
    if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) throw new RangeError(`${name} must be a positive number, got ${v}`);
    return value;
  };
  const resolved: ResolvedRelayOptions = {
    port: positive('port', o.port, DEFAULTS.port, true),
    path: pathPrefix(o.path),
    host: o.host ?? DEFAULTS.host,
    storage: o.storage ?? 'sqlite',
    postgres: o.postgres ? postgresUrl(o.postgres) : undefined,
    dataDir: path.resolve(o.dataDir ?? DEFAULTS.dataDir),
    sqliteSync: o.sqliteSync ?? 'full',
    postgresTimeoutMs: positive('postgresTimeoutMs', o.postgresTimeoutMs, DEFAULTS.postgresTimeoutMs),
    clusterPreviews: o.clusterPreviews ?? false,
    authSecret: o.authSecret || undefined,
    authPublicKeys: o.authPublicKey === undefined ? [] : [o.authPublicKey].flat().filter(Boolean),
    authJwks: o.authJwks ? jwksUrl(o.authJwks) : undefined,
    authJwksCooldownMs: atLeast('authJwksCooldownMs', positive('authJwksCooldownMs', o.authJwksCooldownMs, 30_000), 1_000),
    authDocsClaim: o.authDocsClaim || undefined,
    authorize: o.authorize ?? (o.authWebhook ? authWebhook(webhookUrl(o.authWebhook), { cacheMs: positive('authWebhookCacheMs', o.authWebhookCacheMs, 60_000, true), timeoutMs: positive('authorizeTimeoutMs', o.authorizeTimeoutMs, 5_000) }) : undefined),
    authorizeTimeoutMs: positive('authorizeTimeoutMs', o.authorizeTimeoutMs, 5_000),
    authRecheckIntervalMs: positive('authRecheckIntervalMs', o.authRecheckIntervalMs, 60_000, true),
    tokenRefreshMinIntervalMs: positive('tokenRefreshMinIntervalMs', o.tokenRefreshMinIntervalMs, 1_000, true),
    authIssuer: o.authIssuer || undefined,
    authAudience: o.authAudience || undefined,
    maxMessageBytes: positive('maxMessageBytes', o.maxMessageBytes, DEFAULTS.maxMessageBytes),
    sendBufferLimit: positive('sendBufferLimit', o.sendBufferLimit, DEFAULTS.sendBufferLimit),
    slowConsumerGraceMs: positive('slowConsumerGraceMs', o.slowConsumerGraceMs, DEFAULTS.slowConsumerGraceMs, true),
    maxUnsentBytes: positive('maxUnsentBytes', o.maxUnsentBytes, DEFAULTS.maxUnsentBytes, true),
    maxUnsentBytesPerAddress: positive('maxUnsentBytesPerAddress', o.maxUnsentBytesPerAddress, DEFAULTS.maxUnsentBytesPerAddress, true),
    idleTimeoutMs: positive('idleTimeoutMs', o.idleTimeoutMs, DEFAULTS.idleTimeoutMs, true),
    hooks: o.hooks,
    hookTimeoutMs: positive('hookTimeoutMs', o.hookTimeoutMs, 5_000),
    maxHookCallsInFlight: positive('maxHookCallsInFlight', o.maxHookCallsInFlight, MAX_HOOK_CALLS_IN_FLIGHT),
    webhooks: resolveWebhookOptions(o.webhooks),
    changeDebounceMs: positive('changeDebounceMs', o.changeDebounceMs, 1_000, true),
    changeMaxWaitMs: positive('changeMaxWaitMs', o.changeMaxWaitMs, 10_000),
    compaction: {
      maxUpdates: positive('compaction.maxUpdates', o.compaction?.maxUpdates, DEFAULT_COMPACTION_POLICY.maxUpdates),
      maxBytes: positive('compaction.maxBytes', o.compaction?.maxBytes, DEFAULT_COMPACTION_POLICY.maxBytes),
    },
    staticDir: o.staticDir ? path.resolve(o.staticDir) : undefined,
    etcd: o.etcd ?? [],
    lockBackend: o.lockBackend,
    lockTimeoutMs: positive('lockTimeoutMs', o.lockTimeoutMs, DEFAULTS.lockTimeoutMs),
    peers: (o.peers ?? []).map((u) => wsUrl('peers', u)),
    peerMode: peerMode(o.peerMode),
    relayId: o.relayId || randomRelayId(),
    peerToken: o.peerToken || undefined,
    meshSize: positive('meshSize', o.meshSize, (o.peers?.length ?? 0) + 1),
    replicateIntervalMs: positive('replicateIntervalMs', o.replicateIntervalMs, DEFAULTS.replicateIntervalMs),
    lockAuthority: o.lockAuthority ? wsUrl('lockAuthority', o.lockAuthority) : undefined,
    maxLeasesPerIdentity: positive('maxLeasesPerIdentity', o.maxLeasesPerIdentity, DEFAULTS.maxLeasesPerIdentity),
    maxLeasesPerAddress: positive('maxLeasesPerAddress', o.maxLeasesPerAddress, DEFAULTS.maxLeasesPerAddress, true),
    connectionTimeoutMs: positive('connectionTimeoutMs', o.connectionTimeoutMs, DEFAULTS.connectionTimeoutMs, true),
    maxAwarenessStateBytes: positive('maxAwarenessStateBytes', o.maxAwarenessStateBytes, DEFAULTS.maxAwarenessStateBytes),
    maxAwarenessStatesPerConnection: positive('maxAwarenessStatesPerConnection', o.maxAwarenessStatesPerConnection, DEFAULTS.maxAwarenessStatesPerConnection),
    maxAwarenessStatesPerDoc: positive('maxAwarenessStatesPerDoc', o.maxAwarenessStatesPerDoc, DEFAULTS.maxAwarenessStatesPerDoc),
    maxAwarenessReservationsPerAddress: positive('maxAwarenessReservationsPerAddress', o.maxAwarenessReservationsPerAddress, DEFAULTS.maxAwarenessReservationsPerAddress),
    maxNewClientsPerUpdate: positive('maxNewClientsPerUpdate', o.maxNewClientsPerUpdate, DEFAULTS.maxNewClientsPerUpdate),
    maxClientsPerDoc: positive('maxClientsPerDoc', o.maxClientsPerDoc, DEFAULTS.maxClientsPerDoc),
    maxClientsPerIdentity: positive('maxClientsPerIdentity', o.maxClientsPerIdentity, DEFAULTS.maxClientsPerIdentity),
    pendingTimeoutMs: positive('pendingTimeoutMs', o.pendingTimeoutMs, DEFAULTS.pendingTimeoutMs),
    maxPendingBytesPerDoc: positive('maxPendingBytesPerDoc', o.maxPendingBytesPerDoc, DEFAULTS.maxPendingBytesPerDoc),
    maxPendingUpdatesPerConnection: positive('maxPendingUpdatesPerConnection', o.maxPendingUpdatesPerConnection, DEFAULTS.maxPendingUpdatesPerConnection),
    maxPendingUpdatesPerDoc: positive('maxPendingUpdatesPerDoc', o.maxPendingUpdatesPerDoc, DEFAULTS.maxPendingUpdatesPerDoc),
    allowedOrigins: o.allowedOrigins && o.allowedOrigins.length > 0 ? o.allowedOrigins.map(origin) : undefined,
    maxTokenLifetimeMs: positive('maxTokenLifetimeMs', o.maxTokenLifetimeMs, DEFAULTS.maxTokenLifetimeMs),
    maxJsonDepth: positive('maxJsonDepth', o.maxJsonDepth, DEFAULTS.maxJsonDepth),
    maxPatchDocBytes: positive('maxPatchDocBytes', o.maxPatchDocBytes, DEFAULTS.maxPatchDocBytes),
    metricsToken: o.metricsToken || undefined,
    metricsPort: o.metricsPort === undefined ? undefined : positive('metricsPort', o.metricsPort, 0, true),
    maxConnections: positive('maxConnections', o.maxConnections, DEFAULTS.maxConnections, true),
    maxConnectionsPerAddress: positive('maxConnectionsPerAddress', o.maxConnectionsPerAddress, DEFAULTS.maxConnectionsPerAddress, true),
    maxSessionsPerSocket: positive('maxSessionsPerSocket', o.maxSessionsPerSocket, DEFAULTS.maxSessionsPerSocket),
    maxSessionsPerAddress: positive('maxSessionsPerAddress', o.maxSessionsPerAddress, DEFAULTS.maxSessionsPerAddress, true),
    maxRefusedOpensPerSocket: positive('maxRefusedOpensPerSocket', o.maxRefusedOpensPerSocket, DEFAULTS.maxRefusedOpensPerSocket),
    mux: o.mux ?? DEFAULTS.mux,
  };
  if (o.authorize && o.authWebhook) throw new RangeError('authorize and authWebhook: give one of them');
  if (o.server && !resolved.path) {
    // Without a prefix the relay would take every upgrade of the app's server (its HMR, its own WebSockets).
    throw new RangeError('server: a relay attached to an app\'s server needs a path prefix (path: "/collab")');
  }
  if ((resolved.peers.length > 0 || resolved.lockAuthority) && !resolved.authSecret && (resolved.authPublicKeys.length > 0 || resolved.authJwks)) {
    // Relay trust is taken only from tokens signed with the shared secret, never from an identity provider's.
    throw new RangeError('peers / lockAuthority: relays trust each other through the shared authSecret; with authPublicKey or authJwks set authSecret too (the same on every relay)');
  }
  if (resolved.peers.length > 0 && !resolved.authSecret && !resolved.peerToken) {
    // Open relays trust no peer without it, so the mesh would refuse every link.
    throw new RangeError('peers: relays of a mesh authenticate each other; set authSecret (shared by the mesh) or peerToken (the same on every relay)');
  }
  if (resolved.lockAuthority && !resolved.lockBackend && resolved.etcd.length === 0 && !resolved.authSecret && !resolved.peerToken) {
    // The authority acts for the identity a forwarding relay names only on a link with a relay
    // credential; without one, every forwarded lease would belong to the link itself.
    throw new RangeError('lockAuthority: the lock authority trusts the lease owners a relay forwards only with a relay credential; set authSecret (shared with the authority) or peerToken (the same on both relays)');
  }
  return resolved;
}

/** A path prefix: "" or "/a/b" (no trailing slash, no query, nothing a document name needs). */
function pathPrefix(p: string | undefined): string {
  if (!p || p === '/') return '';
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(p)) throw new RangeError(`path: a prefix like "/collab" (letters, digits, . _ ~ -), got "${p}"`);
  return p;
}

/**
 * The JWK Set URL: https, or http to a loopback host only (anyone on the path of a plain http
 * fetch could serve their own key and sign any token).
 */
function jwksUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RangeError(`authJwks: not a URL: "${url}"`);
  }
  const loopback = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/.test(parsed.hostname);
  if (parsed.protocol === 'https:' || (parsed.protocol === 'http:' && loopback)) return url;
  throw new RangeError(`authJwks: the JWK Set must be fetched over https:// (http:// only from a loopback host), got "${url}"`);
}

function webhookUrl(url: string): string {
  if (!/^https?:\/\/./.test(url)) throw new RangeError(`authWebhook: an http(s) URL, got "${url}"`);
  return url;
}

function atLeast(name: string, value: number, min: number): number {
  if (value < min) throw new RangeError(`${name} must be at least ${min}, got ${value}`);
  return value;
}

/** A PostgreSQL connection URL, as node-postgres takes it (postgres:// or postgresql://). */
function postgresUrl(url: string): string {
  if (!/^postgres(ql)?:\/\/./.test(url)) throw new RangeError('postgres: a database URL must start with postgres:// or postgresql://');
  return url;
}

function wsUrl(name: string, url: string): string {
  if (!/^wss?:\/\/[^/]+/.test(url)) throw new RangeError(`${name}: a relay URL must start with ws:// or wss://, got "${url}"`);
  return url.replace(/\/+$/, '');
}

/** An allowed origin: '*', or scheme://host[:port] as browsers send it (no path). */
function origin(value: string): string {
  if (value === '*') return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new RangeError(`allowedOrigins: "${value}" is not an origin (scheme://host[:port]) or '*'`);
  }
  if (url.origin === 'null' || url.pathname !== '/' || url.search || url.hash) {
    throw new RangeError(`allowedOrigins: "${value}" is not an origin (scheme://host[:port]) or '*'`);
  }
  return url.origin;
}

function peerMode(mode: string | undefined): 'on-demand' | 'replicate-all' {
  if (mode === undefined || mode === 'on-demand' || mode === 'replicate-all') return mode ?? 'on-demand';
  throw new RangeError(`peerMode must be on-demand or replicate-all, got "${mode}"`);
}

function randomRelayId(): string {
  return `relay-${randomUUID().slice(0, 8)}`;
}
