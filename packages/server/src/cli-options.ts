import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULTS, type RelayOptions } from './config.js';
import { CliError, int, type Flag } from './cli-flag.js';
import { WEBHOOK_FLAGS } from './webhooks/webhook-flags.js';

export { CliError };

// Over ~400 lines: one table of every flag with its variable, help and how it applies (the
// README's flag table mirrors it); split the table by topic (limits, mesh, storage) next.

const positive = (name: string, v: string): number => int(name, v, 1);
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Every setting: a --flag and a CAPSYNC_* variable (the flag wins). */
export const FLAGS: Flag[] = [
  { flag: 'port', env: 'CAPSYNC_PORT', type: 'string', help: `TCP port (0 = any free port). Default ${DEFAULTS.port}`, apply: (o, v) => (o.port = int('--port', v, 0, 65535)) },
  { flag: 'host', env: 'CAPSYNC_HOST', type: 'string', help: `Interface to listen on; 0.0.0.0 for all. Default ${DEFAULTS.host}`, apply: (o, v) => (o.host = v) },
  { flag: 'data', env: 'CAPSYNC_DATA', type: 'string', help: `Directory of the SQLite database. Default ${DEFAULTS.dataDir}`, apply: (o, v) => (o.dataDir = v) },
  {
    flag: 'storage',
    env: 'CAPSYNC_STORAGE',
    type: 'string',
    help: 'sqlite (durable, default) or memory (lost on exit)',
    apply: (o, v) => {
      if (v !== 'sqlite' && v !== 'memory') throw new CliError(`--storage must be sqlite or memory, got "${v}"`);
      o.storage = v;
    },
  },
  {
    flag: 'postgres',
    env: 'CAPSYNC_POSTGRES',
    type: 'string',
    help: 'PostgreSQL URL (postgres://user:password@host:5432/db; also DATABASE_URL): documents live there instead of SQLite, and it is the lock authority (unless --etcd or --lock-authority). Default none',
    apply: (o, v) => {
      if (!/^postgres(ql)?:\/\/./.test(v)) throw new CliError('--postgres must be a postgres:// or postgresql:// URL');
      o.postgres = v;
    },
  },
  {
    flag: 'postgres-timeout-ms',
    env: 'CAPSYNC_POSTGRES_TIMEOUT_MS',
    type: 'string',
    help: `With --postgres: a statement unanswered this long counts the database unreachable (writes retried, unacknowledged; /readyz 503). Default ${DEFAULTS.postgresTimeoutMs}`,
    apply: (o, v) => (o.postgresTimeoutMs = positive('--postgres-timeout-ms', v)),
  },
  {
    flag: 'sqlite-sync',
    env: 'CAPSYNC_SQLITE_SYNC',
    type: 'string',
    help: 'full (fsync each commit, default) or normal (survives process crashes, not power loss)',
    apply: (o, v) => {
      if (v !== 'full' && v !== 'normal') throw new CliError(`--sqlite-sync must be full or normal, got "${v}"`);
      o.sqliteSync = v;
    },
  },
  { flag: 'static-dir', env: 'CAPSYNC_STATIC_DIR', type: 'string', help: 'Serve the static files in this directory at / (a web app). Default none', apply: (o, v) => (o.staticDir = v) },
  { flag: 'auth-secret', env: 'CAPSYNC_AUTH_SECRET', type: 'string', help: 'HMAC secret of JWTs; without it the relay is open', apply: (o, v) => (o.authSecret = v) },
  {
    flag: 'path',
    env: 'CAPSYNC_PATH',
    type: 'string',
    help: 'Path prefix of everything the relay serves (/collab: documents at /collab/<name>, 404 outside it). Default none',
    apply: (o, v) => (o.path = v),
  },
  {
    flag: 'auth-webhook',
    env: 'CAPSYNC_AUTH_WEBHOOK',
    type: 'string',
    help: 'URL the relay POSTs {token, docName} to for every document a client opens; answer {permission: read|write|none, identity?, expiresAt?} (403: none). Default none',
    apply: (o, v) => {
      if (!/^https?:\/\/./.test(v)) throw new CliError('--auth-webhook must be an http(s) URL');
      o.authWebhook = v;
    },
  },
  {
    flag: 'auth-webhook-cache-ms',
    env: 'CAPSYNC_AUTH_WEBHOOK_CACHE_MS',
    type: 'string',
    help: 'How long an --auth-webhook answer is kept per token and document (0: ask every time). Default 60000',
    apply: (o, v) => (o.authWebhookCacheMs = int('--auth-webhook-cache-ms', v, 0)),
  },
  {
    flag: 'auth-recheck-interval-ms',
    env: 'CAPSYNC_AUTH_RECHECK_INTERVAL_MS',
    type: 'string',
    help: "Every this many ms, each open session's permission is decided again with its current token (JWT claims, or --auth-webhook asked again): downgraded to read live, or closed 4412 permission-revoked (0: off). Default 60000",
    apply: (o, v) => (o.authRecheckIntervalMs = int('--auth-recheck-interval-ms', v, 0)),
  },
  {
    flag: 'token-refresh-min-interval-ms',
    env: 'CAPSYNC_TOKEN_REFRESH_MIN_INTERVAL_MS',
    type: 'string',
    help: 'A socket\'s fresh tokens (token-refresh) are taken at most this often; sooner ones wait, only the latest. Default 1000',
    apply: (o, v) => (o.tokenRefreshMinIntervalMs = int('--token-refresh-min-interval-ms', v, 0)),
  },
  {
    flag: 'auth-public-key',
    env: 'CAPSYNC_AUTH_PUBLIC_KEY',
    type: 'string',
    help: "File with the identity provider's public key(s) that sign JWTs (RS*/PS*/ES*/EdDSA): PEM, a JWK or a JWK Set. Default none",
    apply: (o, v) => (o.authPublicKey = readKeyFile(v)),
  },
  {
    flag: 'auth-jwks',
    env: 'CAPSYNC_AUTH_JWKS',
    type: 'string',
    help: "URL of the identity provider's JWK Set (jwks_uri): keys fetched, cached, refreshed on rotation. Default none",
    apply: (o, v) => (o.authJwks = v),
  },
  {
    flag: 'auth-docs-claim',
    env: 'CAPSYNC_AUTH_DOCS_CLAIM',
    type: 'string',
    help: 'JWT claim (or dot-separated path) holding the document permissions: a map name->read|write, {read:[...],write:[...]} or a list (write). Default docs',
    apply: (o, v) => (o.authDocsClaim = v),
  },
  { flag: 'auth-issuer', env: 'CAPSYNC_AUTH_ISSUER', type: 'string', help: 'Required JWT iss claim', apply: (o, v) => (o.authIssuer = v) },
  { flag: 'auth-audience', env: 'CAPSYNC_AUTH_AUDIENCE', type: 'string', help: 'Required JWT aud claim', apply: (o, v) => (o.authAudience = v) },
  {
    flag: 'max-message-bytes',
    env: 'CAPSYNC_MAX_MESSAGE_BYTES',
    type: 'string',
    help: `Largest frame or HTTP body. Default ${DEFAULTS.maxMessageBytes} (16 MiB)`,
    apply: (o, v) => (o.maxMessageBytes = positive('--max-message-bytes', v)),
  },
  {
    flag: 'send-buffer-limit',
    env: 'CAPSYNC_SEND_BUFFER_LIMIT',
    type: 'string',
    help: `Unsent bytes per connection before it is closed as a slow consumer. Default ${DEFAULTS.sendBufferLimit}`,
    apply: (o, v) => (o.sendBufferLimit = positive('--send-buffer-limit', v)),
  },
  {
    flag: 'slow-consumer-grace-ms',
    env: 'CAPSYNC_SLOW_CONSUMER_GRACE_MS',
    type: 'string',
    help: `How long a connection may stay over the send buffer limit. Default ${DEFAULTS.slowConsumerGraceMs}`,
    apply: (o, v) => (o.slowConsumerGraceMs = int('--slow-consumer-grace-ms', v)),
  },
  {
    flag: 'max-unsent-bytes',
    env: 'CAPSYNC_MAX_UNSENT_BYTES',
    type: 'string',
    help: `Unsent bytes of the whole relay (all connections and document HTTP responses); past it the largest non-readers are closed (0 = no cap). Default ${DEFAULTS.maxUnsentBytes}`,
    apply: (o, v) => (o.maxUnsentBytes = int('--max-unsent-bytes', v)),
  },
  {
    flag: 'max-unsent-bytes-per-address',
    env: 'CAPSYNC_MAX_UNSENT_BYTES_PER_ADDRESS',
    type: 'string',
    help: `Unsent bytes to one client address; past it its non-readers are closed and its document GETs refused 429 (0 = no cap). Default ${DEFAULTS.maxUnsentBytesPerAddress}`,
    apply: (o, v) => (o.maxUnsentBytesPerAddress = int('--max-unsent-bytes-per-address', v)),
  },
  {
    flag: 'idle-timeout-ms',
    env: 'CAPSYNC_IDLE_TIMEOUT_MS',
    type: 'string',
    help: `Unload a document this long after its last client left. Default ${DEFAULTS.idleTimeoutMs}`,
    apply: (o, v) => (o.idleTimeoutMs = int('--idle-timeout-ms', v)),
  },
  {
    flag: 'compact-updates',
    env: 'CAPSYNC_COMPACT_UPDATES',
    type: 'string',
    help: 'Merge a document log into a snapshot at this many updates. Default 500',
    apply: (o, v) => (o.compaction = { ...o.compaction, maxUpdates: positive('--compact-updates', v) }),
  },
  {
    flag: 'compact-bytes',
    env: 'CAPSYNC_COMPACT_BYTES',
    type: 'string',
    help: 'Merge a document log into a snapshot at this many bytes. Default 1048576',
    apply: (o, v) => (o.compaction = { ...o.compaction, maxBytes: positive('--compact-bytes', v) }),
  },
  {
    flag: 'etcd',
    env: 'CAPSYNC_ETCD',
    type: 'string',
    help: 'Comma-separated etcd client URLs (http://host:2379,...): etcd is the lock authority. Default: this relay (embedded), or the PostgreSQL database with --postgres',
    apply: (o, v) => (o.etcd = etcdEndpoints(v)),
  },
  {
    flag: 'lock-timeout-ms',
    env: 'CAPSYNC_LOCK_TIMEOUT_MS',
    type: 'string',
    help: `Answer a lock request 'unavailable' when the lock authority takes longer. Default ${DEFAULTS.lockTimeoutMs}`,
    apply: (o, v) => (o.lockTimeoutMs = int('--lock-timeout-ms', v, 1)),
  },
  {
    flag: 'peer',
    env: 'CAPSYNC_PEER',
    type: 'string',
    multiple: true,
    help: 'Another relay of the mesh, ws://host:port (repeat the flag; the variable takes a comma list). Default none',
    apply: (o, v) => (o.peers = relayUrls('--peer', v)),
  },
  {
    flag: 'peer-mode',
    env: 'CAPSYNC_PEER_MODE',
    type: 'string',
    help: 'on-demand (sync the documents clients have open, default) or replicate-all (a full backup replica)',
    apply: (o, v) => {
      if (v !== 'on-demand' && v !== 'replicate-all') throw new CliError(`--peer-mode must be on-demand or replicate-all, got "${v}"`);
      o.peerMode = v;
    },
  },
  { flag: 'relay-id', env: 'CAPSYNC_RELAY_ID', type: 'string', help: "This relay's name in the mesh (logs, metrics). Default: random per start", apply: (o, v) => (o.relayId = v) },
  {
    flag: 'peer-token',
    env: 'CAPSYNC_PEER_TOKEN',
    type: 'string',
    help: 'Credential presented to peers. Default: minted from --auth-secret (peers share it), none on an open relay',
    apply: (o, v) => (o.peerToken = v),
  },
  {
    flag: 'mesh-size',
    env: 'CAPSYNC_MESH_SIZE',
    type: 'string',
    help: 'Relays in the mesh, this one included, for quorum durability. Default: peers + 1',
    apply: (o, v) => (o.meshSize = positive('--mesh-size', v)),
  },
  {
    flag: 'replicate-interval-ms',
    env: 'CAPSYNC_REPLICATE_INTERVAL_MS',
    type: 'string',
    help: `How often a replicate-all relay sweeps every document. Default ${DEFAULTS.replicateIntervalMs}`,
    apply: (o, v) => (o.replicateIntervalMs = positive('--replicate-interval-ms', v)),
  },
  {
    flag: 'lock-authority',
    env: 'CAPSYNC_LOCK_AUTHORITY',
    type: 'string',
    help: 'A relay ws://host:port whose embedded lock backend is the authority: forward lock requests there (needs --auth-secret or --peer-token, shared with it)',
    apply: (o, v) => (o.lockAuthority = relayUrls('--lock-authority', v)[0]!),
  },
  {
    flag: 'max-leases-per-identity',
    env: 'CAPSYNC_MAX_LEASES_PER_IDENTITY',
    type: 'string',
    help: `Leases one identity may hold at once. Default ${DEFAULTS.maxLeasesPerIdentity}`,
    apply: (o, v) => (o.maxLeasesPerIdentity = positive('--max-leases-per-identity', v)),
  },
  {
    flag: 'max-leases-per-address',
    env: 'CAPSYNC_MAX_LEASES_PER_ADDRESS',
    type: 'string',
    help: `Leases the clients without a token sub may hold at once from one client address, together (0 = no cap). Default ${DEFAULTS.maxLeasesPerAddress}`,
    apply: (o, v) => (o.maxLeasesPerAddress = int('--max-leases-per-address', v)),
  },
  {
    flag: 'connection-timeout-ms',
    env: 'CAPSYNC_CONNECTION_TIMEOUT_MS',
    type: 'string',
    help: `Close a connection silent this long (pings every half of it; 0 = never). Default ${DEFAULTS.connectionTimeoutMs}`,
    apply: (o, v) => (o.connectionTimeoutMs = int('--connection-timeout-ms', v)),
  },
  {
    flag: 'max-awareness-state-bytes',
    env: 'CAPSYNC_MAX_AWARENESS_STATE_BYTES',
    type: 'string',
    help: `Largest awareness state of one client id (JSON bytes). Default ${DEFAULTS.maxAwarenessStateBytes}`,
    apply: (o, v) => (o.maxAwarenessStateBytes = positive('--max-awareness-state-bytes', v)),
  },
  {
    flag: 'max-awareness-states-per-connection',
    env: 'CAPSYNC_MAX_AWARENESS_STATES_PER_CONNECTION',
    type: 'string',
    help: `Awareness client ids one connection may set. Default ${DEFAULTS.maxAwarenessStatesPerConnection}`,
    apply: (o, v) => (o.maxAwarenessStatesPerConnection = positive('--max-awareness-states-per-connection', v)),
  },
  {
    flag: 'max-awareness-states-per-doc',
    env: 'CAPSYNC_MAX_AWARENESS_STATES_PER_DOC',
    type: 'string',
    help: `Awareness states one document holds. Default ${DEFAULTS.maxAwarenessStatesPerDoc}`,
    apply: (o, v) => (o.maxAwarenessStatesPerDoc = positive('--max-awareness-states-per-doc', v)),
  },
  {
    flag: 'max-awareness-reservations-per-address',
    env: 'CAPSYNC_MAX_AWARENESS_RESERVATIONS_PER_ADDRESS',
    type: 'string',
    help: `Awareness id reservations one client address may hold per document for identities without a token sub. Default ${DEFAULTS.maxAwarenessReservationsPerAddress}`,
    apply: (o, v) => (o.maxAwarenessReservationsPerAddress = positive('--max-awareness-reservations-per-address', v)),
  },
  {
    flag: 'max-new-clients-per-update',
    env: 'CAPSYNC_MAX_NEW_CLIENTS_PER_UPDATE',
    type: 'string',
    help: `Yjs client ids one update may introduce. Default ${DEFAULTS.maxNewClientsPerUpdate}`,
    apply: (o, v) => (o.maxNewClientsPerUpdate = positive('--max-new-clients-per-update', v)),
  },
  {
    flag: 'max-clients-per-doc',
    env: 'CAPSYNC_MAX_CLIENTS_PER_DOC',
    type: 'string',
    help: `Yjs client ids one document may hold. Default ${DEFAULTS.maxClientsPerDoc}`,
    apply: (o, v) => (o.maxClientsPerDoc = positive('--max-clients-per-doc', v)),
  },
  {
    flag: 'max-clients-per-identity',
    env: 'CAPSYNC_MAX_CLIENTS_PER_IDENTITY',
    type: 'string',
    help: `Yjs client ids of one document one identity may own (open relay: one connection may introduce). Default ${DEFAULTS.maxClientsPerIdentity}`,
    apply: (o, v) => (o.maxClientsPerIdentity = positive('--max-clients-per-identity', v)),
  },
  {
    flag: 'pending-timeout-ms',
    env: 'CAPSYNC_PENDING_TIMEOUT_MS',
    type: 'string',
    help: `How long an update may wait for missing dependencies before it is refused. Default ${DEFAULTS.pendingTimeoutMs}`,
    apply: (o, v) => (o.pendingTimeoutMs = positive('--pending-timeout-ms', v)),
  },
  {
    flag: 'max-pending-bytes-per-doc',
    env: 'CAPSYNC_MAX_PENDING_BYTES_PER_DOC',
    type: 'string',
    help: `Bytes of updates waiting for missing dependencies one document may hold. Default ${DEFAULTS.maxPendingBytesPerDoc}`,
    apply: (o, v) => (o.maxPendingBytesPerDoc = positive('--max-pending-bytes-per-doc', v)),
  },
  {
    flag: 'max-pending-updates-per-connection',
    env: 'CAPSYNC_MAX_PENDING_UPDATES_PER_CONNECTION',
    type: 'string',
    help: `Updates of one connection that may wait for missing dependencies at a time. Default ${DEFAULTS.maxPendingUpdatesPerConnection}`,
    apply: (o, v) => (o.maxPendingUpdatesPerConnection = positive('--max-pending-updates-per-connection', v)),
  },
  {
    flag: 'max-pending-updates-per-doc',
    env: 'CAPSYNC_MAX_PENDING_UPDATES_PER_DOC',
    type: 'string',
    help: `Updates of one document that may wait for missing dependencies at a time. Default ${DEFAULTS.maxPendingUpdatesPerDoc}`,
    apply: (o, v) => (o.maxPendingUpdatesPerDoc = positive('--max-pending-updates-per-doc', v)),
  },
  {
    flag: 'allowed-origins',
    env: 'CAPSYNC_ALLOWED_ORIGINS',
    type: 'string',
    multiple: true,
    help: "Origins allowed for browser WebSockets and HTTP writes ('*' = any; repeat or comma list). Default: open relay its own and loopback origins, with auth any",
    apply: (o, v) => (o.allowedOrigins = v.split(',').map((s) => s.trim()).filter(Boolean)),
  },
  {
    flag: 'max-token-lifetime-ms',
    env: 'CAPSYNC_MAX_TOKEN_LIFETIME_MS',
    type: 'string',
    help: `Longest token lifetime accepted (exp is required). Default ${DEFAULTS.maxTokenLifetimeMs} (24 h)`,
    apply: (o, v) => (o.maxTokenLifetimeMs = positive('--max-token-lifetime-ms', v)),
  },
  {
    flag: 'max-json-depth',
    env: 'CAPSYNC_MAX_JSON_DEPTH',
    type: 'string',
    help: `Deepest nesting GET /v1/docs/:name renders (422 past it). Default ${DEFAULTS.maxJsonDepth}`,
    apply: (o, v) => (o.maxJsonDepth = positive('--max-json-depth', v)),
  },
  { flag: 'metrics-token', env: 'CAPSYNC_METRICS_TOKEN', type: 'string', help: 'Bearer token GET /metrics requires. Default none', apply: (o, v) => (o.metricsToken = v) },
  {
    flag: 'metrics-port',
    env: 'CAPSYNC_METRICS_PORT',
    type: 'string',
    help: 'Serve /metrics on this port of 127.0.0.1 only, not the main port (0 = any free port). Default none',
    apply: (o, v) => (o.metricsPort = int('--metrics-port', v, 0, 65535)),
  },
  {
    flag: 'max-connections',
    env: 'CAPSYNC_MAX_CONNECTIONS',
    type: 'string',
    help: `Open connections in total: WebSocket (clients, locks; not peer relays) and HTTP (0 = no cap). Default ${DEFAULTS.maxConnections}`,
    apply: (o, v) => (o.maxConnections = int('--max-connections', v)),
  },
  {
    flag: 'max-connections-per-address',
    env: 'CAPSYNC_MAX_CONNECTIONS_PER_ADDRESS',
    type: 'string',
    help: `Open connections from one client address (0 = no cap). Default ${DEFAULTS.maxConnectionsPerAddress}`,
    apply: (o, v) => (o.maxConnectionsPerAddress = int('--max-connections-per-address', v)),
  },
  {
    flag: 'max-sessions-per-socket',
    env: 'CAPSYNC_MAX_SESSIONS_PER_SOCKET',
    type: 'string',
    help: `Sessions (documents) one multiplexed socket (/.capsync/mux) may have open at once; past it an open is refused 4413. Default ${DEFAULTS.maxSessionsPerSocket}`,
    apply: (o, v) => (o.maxSessionsPerSocket = positive('--max-sessions-per-socket', v)),
  },
  {
    flag: 'max-sessions-per-address',
    env: 'CAPSYNC_MAX_SESSIONS_PER_ADDRESS',
    type: 'string',
    help: `Sessions (documents) the multiplexed sockets of one client address may have open together; past it an open is refused 4413 (0 = no cap). Default ${DEFAULTS.maxSessionsPerAddress}`,
    apply: (o, v) => (o.maxSessionsPerAddress = int('--max-sessions-per-address', v)),
  },
  {
    flag: 'max-refused-opens-per-socket',
    env: 'CAPSYNC_MAX_REFUSED_OPENS_PER_SOCKET',
    type: 'string',
    help: `Opens one multiplexed socket may have refused in a row (an accepted one starts the count again); the next refusal closes the socket 4413. Default ${DEFAULTS.maxRefusedOpensPerSocket}`,
    apply: (o, v) => (o.maxRefusedOpensPerSocket = positive('--max-refused-opens-per-socket', v)),
  },
  {
    flag: 'cluster-previews',
    env: 'CAPSYNC_CLUSTER_PREVIEWS',
    type: 'string',
    help: "on: with --postgres, send a client's change to the other relays' clients before its commit (faster between relays; an edit built on it then waits for that commit); off (default)",
    apply: (o, v) => {
      if (v !== 'on' && v !== 'off') throw new CliError(`--cluster-previews must be on or off, got "${v}"`);
      o.clusterPreviews = v === 'on';
    },
  },
  {
    flag: 'mux',
    env: 'CAPSYNC_MUX',
    type: 'string',
    help: 'on (default): serve /.capsync/mux, every document of a client over one socket; off: refuse it with 4404 as older relays do (clients then use a socket per document)',
    apply: (o, v) => {
      if (v !== 'on' && v !== 'off') throw new CliError(`--mux must be on or off, got "${v}"`);
      o.mux = v === 'on';
    },
  },
  { flag: 'log-level', env: 'CAPSYNC_LOG_LEVEL', type: 'string', help: 'fatal, error, warn, info (default), debug, trace or silent', apply: (o, v) => {
      if (!LOG_LEVELS.includes(v)) throw new CliError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${v}"`);
      o.logLevel = v;
    },
  },
  ...WEBHOOK_FLAGS,
];


export type CliResult = { help: true } | { help: false; options: RelayOptions & { logLevel: string } };

/** Parses argv and env into relay options. Throws CliError on unknown or malformed input. */
export function parseCli(argv: string[], env: NodeJS.ProcessEnv): CliResult {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(FLAGS.map((f) => [f.flag, { type: f.type, ...(f.multiple ? { multiple: true } : {}) }])),
      },
    }));
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (values['help']) return { help: true };
  const options: RelayOptions & { logLevel: string } = { logLevel: 'info' };
  for (const f of FLAGS) {
    const given = values[f.flag];
    const v = Array.isArray(given) ? given.join(',') : (given ?? env[f.env]);
    if (typeof v === 'string' && v !== '') f.apply(options, v);
  }
  // The variable hosting platforms set for an attached database; CAPSYNC_POSTGRES and the flag win.
  const databaseUrl = env['DATABASE_URL'];
  if (options.postgres === undefined && databaseUrl) {
    if (!/^postgres(ql)?:\/\/./.test(databaseUrl)) throw new CliError('DATABASE_URL is set but is not a postgres:// or postgresql:// URL; unset it or set --postgres');
    options.postgres = databaseUrl;
  }
  return { help: false, options };
}

export function helpText(): string {
  const rows = FLAGS.map((f) => `  --${f.flag.padEnd(36)} ${f.env.padEnd(44)} ${f.help}`);
  return [
    'capsync-server: durable Yjs relay (y-websocket protocol) with SQLite, JWT auth and metrics',
    '',
    'Usage: capsync-server [options]',
    '',
    `  ${'option'.padEnd(38)} ${'environment variable'.padEnd(44)} meaning`,
    ...rows,
    `  ${'-h, --help'.padEnd(38)} print this help`,
    '',
    'Documents are served at ws://HOST:PORT/<docName>; HTTP: /healthz /readyz /metrics /v1/docs/:name',
  ].join('\n');
}

/** Parses "ws://a:4000,ws://b:4000" into relay URLs; refuses anything that is not ws(s). */
function relayUrls(name: string, v: string): string[] {
  const urls = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (urls.length === 0) throw new CliError(`${name} needs a URL`);
  for (const u of urls) {
    if (!/^wss?:\/\/[^/]+/.test(u)) throw new CliError(`${name}: "${u}" is not a ws(s) URL`);
  }
  return urls;
}

/** Parses "http://a:2379,http://b:2379" into URLs; refuses anything that is not http(s). */
function etcdEndpoints(v: string): string[] {
  const urls = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (urls.length === 0) throw new CliError('--etcd needs at least one URL');
  for (const u of urls) {
    if (!/^https?:\/\/[^/]+/.test(u)) throw new CliError(`--etcd: "${u}" is not an http(s) URL`);
  }
  return urls;
}

/** The text of a key file (read at startup: a relay that cannot read its key must not start open). */
function readKeyFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`--auth-public-key: cannot read "${file}": ${(err as Error).message}`);
  }
}
