import client from 'prom-client';

/**
 * The relay's Prometheus metrics, in a registry of its own so that several relays in one
 * process (tests, benchmarks) never collide. Names follow Prometheus conventions.
 */
export class RelayMetrics {
  readonly registry = new client.Registry();

  /** Document and lock connections: a multiplexed socket counts each of its sessions here (see `sockets`). */
  readonly connections = new client.Gauge({ name: 'capsync_connections', help: 'Open document and lock connections (a session of a multiplexed socket counts as one)', registers: [this.registry] });
  readonly sockets = new client.Gauge({
    name: 'capsync_sockets',
    help: 'Open WebSockets, by endpoint (doc, locks, mesh, mux)',
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
  });
  readonly docsLoaded = new client.Gauge({ name: 'capsync_docs_loaded', help: 'Documents loaded in memory', registers: [this.registry] });
  readonly storageWaitingAppends = new client.Gauge({
    name: 'capsync_storage_waiting_appends',
    help: 'Appends waiting to be tried again because storage could not be reached (0 while it can)',
    registers: [this.registry],
  });
  readonly storageReachable = new client.Gauge({
    name: 'capsync_storage_reachable',
    help: "1 while the relay's storage takes its writes, 0 while appends wait for it to be reachable again",
    registers: [this.registry],
  });
  readonly storageReachabilityChanges = new client.Counter({
    name: 'capsync_storage_reachability_changes_total',
    help: 'Times capsync_storage_reachable changed (storage lost or back)',
    registers: [this.registry],
  });
  /** Where `storagePoolInUse` reads its value on each scrape (set for a PostgreSQL store). */
  poolInUseSource: () => number = () => 0;
  readonly storagePoolInUse: client.Gauge = new client.Gauge({
    name: 'capsync_storage_pool_in_use',
    help: "PostgreSQL connections of the document store's pool in use (checked out), at the scrape; 0 on other storage",
    registers: [this.registry],
    collect: (): void => this.storagePoolInUse.set(this.poolInUseSource()),
  });
  readonly storageRetries = new client.Counter({
    name: 'capsync_storage_retries_total',
    help: 'Appends tried again after storage could not be reached',
    registers: [this.registry],
  });
  readonly messagesIn = tallied(new client.Counter({
    name: 'capsync_messages_in_total',
    help: 'Messages received, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  }));
  readonly messagesOut = tallied(new client.Counter({
    name: 'capsync_messages_out_total',
    help: 'Messages sent, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  }));
  readonly bytesIn = tallied(new client.Counter({ name: 'capsync_bytes_in_total', help: 'Bytes received in WebSocket frames', registers: [this.registry] }));
  readonly bytesOut = tallied(new client.Counter({ name: 'capsync_bytes_out_total', help: 'Bytes sent in WebSocket frames', registers: [this.registry] }));
  readonly applySeconds = new client.Histogram({
    name: 'capsync_update_apply_seconds',
    help: 'Time to validate and apply one incoming update to the in-memory document',
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
    registers: [this.registry],
  });
  readonly persistSeconds = new client.Histogram({
    name: 'capsync_persist_seconds',
    help: 'Time from handing an update to storage until it is committed',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });
  /** Cluster mode (relays sharing PostgreSQL): see ClusterFollower. */
  readonly clusterNoteLag = new client.Histogram({
    name: 'capsync_cluster_notification_lag_seconds',
    help: "From another relay sending a commit to its change being applied here, by its note (both relays' clocks)",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly clusterPreviewLag = new client.Histogram({
    name: 'capsync_cluster_preview_lag_seconds',
    help: "From another relay sending a preview (a change before its commit) to its being sent on to this relay's connections (both relays' clocks)",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly clusterPreviews = new client.Counter({
    name: 'capsync_cluster_previews_total',
    help: 'Updates sent to the other relays before their commit, by outcome (sent; dropped: too large or too many waiting; failed: the database did not take the statement; forwarded: received from another relay and sent on to the connections here)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly hookCalls = new client.Counter({
    name: 'capsync_hook_calls_total',
    help: "Calls of the backend's hooks (createRelay hooks), by hook and outcome (ok, error: threw or rejected, timeout: past hookTimeoutMs, dropped: too many in flight)",
    labelNames: ['hook', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly clusterCatchUpReads = new client.Counter({
    name: 'capsync_cluster_catch_up_reads_total',
    help: 'Reads of a document log after notes were missed, too large to travel inline, or held while the document was paused',
    registers: [this.registry],
  });
  readonly clusterListening = new client.Gauge({
    name: 'capsync_cluster_listening',
    help: "1 while the relay's connection that listens to other relays' commits is up, 0 while it is lost (cluster mode only)",
    registers: [this.registry],
  });
  readonly ackSeconds = new client.Histogram({
    name: 'capsync_ack_latency_seconds',
    help: 'Time from receiving an update until its durable ack is sent',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });
  readonly refusals = new client.Counter({
    name: 'capsync_refusals_total',
    help: 'Refused messages or connections, by reason (an error code)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  /** Live permissions: fresh tokens presented on open connections (`token-refresh`), by outcome. */
  readonly tokenRefreshes = new client.Counter({
    name: 'capsync_token_refreshes_total',
    help: "Fresh tokens presented on open connections, by outcome (accepted; refused: invalid, expired or another identity; deferred: sooner than --token-refresh-min-interval-ms)",
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  /** Live permissions: an open session's permission decided again (a refresh, the periodic re-check), by outcome. */
  readonly permissionChecks = new client.Counter({
    name: 'capsync_permission_checks_total',
    help: "Open sessions' permissions decided again (token refresh or --auth-recheck-interval-ms), by outcome (kept, downgraded, upgraded, revoked, expired, undecided; closed-undecided: closed after 3 undecided in a row; superseded: an answer not applied, a newer re-check or credential came meanwhile)",
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  /** Every configured bound, by its flag name (`max-leases-per-identity`, ...): what it refused. */
  readonly limitRefusals = new client.Counter({
    name: 'capsync_limit_refusals_total',
    help: 'Input refused or connections closed because a configured limit was reached, by limit (its flag name)',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });
  /** Where `unsentBytes` reads its value on each scrape (set by the relay's UnsentBudget): no work per message. */
  unsentSource: () => number = () => 0;
  readonly unsentBytes: client.Gauge = new client.Gauge({
    name: 'capsync_unsent_bytes',
    help: 'Bytes queued to connections and document HTTP responses but not yet written out (bounded by --max-unsent-bytes)',
    registers: [this.registry],
    collect: (): void => this.unsentBytes.set(this.unsentSource()),
  });
  readonly closes = new client.Counter({
    name: 'capsync_connection_closes_total',
    help: 'Connections closed by the relay, by close code name',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly compactions = new client.Counter({
    name: 'capsync_compactions_total',
    help: 'Update logs merged into a snapshot',
    registers: [this.registry],
  });
  readonly docUnloads = new client.Counter({ name: 'capsync_doc_unloads_total', help: 'Idle documents unloaded', registers: [this.registry] });
  /** Documents deleted through this relay (DELETE /v1/docs/:name); the sessions it closed count as closes{code="DocumentDeleted"}. */
  readonly docDeletes = new client.Counter({ name: 'capsync_doc_deletes_total', help: 'Documents deleted through this relay (DELETE /v1/docs/:name)', registers: [this.registry] });

  // ---- CP: locks and fencing ----
  readonly lockGrants = new client.Counter({ name: 'capsync_lock_grants_total', help: 'Leases granted', registers: [this.registry] });
  readonly lockRenewals = new client.Counter({ name: 'capsync_lock_renewals_total', help: 'Leases renewed', registers: [this.registry] });
  readonly lockReleases = new client.Counter({ name: 'capsync_lock_releases_total', help: 'Leases released by their holder', registers: [this.registry] });
  readonly lockExpiries = new client.Counter({
    name: 'capsync_lock_expiries_total',
    help: 'Leases that ran out without being released (holder crashed, paused or cut off)',
    registers: [this.registry],
  });
  readonly lockRefusals = new client.Counter({
    name: 'capsync_lock_refusals_total',
    help: 'Lock requests refused, by reason (lock-timeout, lease-lost, stale-token, invalid-lock-request, unavailable, ...)',
    labelNames: ['op', 'reason'] as const,
    registers: [this.registry],
  });
  readonly lockUnavailable = new client.Counter({
    name: 'capsync_lock_unavailable_total',
    help: 'Lock and fencing requests answered "unavailable": the lock authority could not be reached in time (the CP side choosing C over A)',
    registers: [this.registry],
  });
  readonly clientOwnerConflicts = new client.Counter({
    name: 'capsync_client_owner_conflicts_total',
    help: 'Yjs client ids a peer relay said another identity owns than the one that owns them here (claimed on both sides of a partition)',
    registers: [this.registry],
  });
  readonly fencingRejections = new client.Counter({
    name: 'capsync_fencing_rejections_total',
    help: 'Fenced writes refused, by reason (stale-token, lease-lost, fenced-area for updates touching the fenced area by another route)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly lockSeconds = new client.Histogram({
    name: 'capsync_lock_op_seconds',
    help: 'Time to answer a lock request, by operation (acquire includes waiting for the lock)',
    labelNames: ['op'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5],
    registers: [this.registry],
  });

  // ---- the mesh (peer relays) ----
  readonly peerUp = new client.Gauge({
    name: 'capsync_peer_up',
    help: 'Whether the control link to a peer relay is up (1) or down (0): 0 is a partition or a dead peer',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  readonly peerLinkChanges = new client.Counter({
    name: 'capsync_peer_link_changes_total',
    help: 'Peer relay links going up or down (partition events and heals)',
    labelNames: ['peer', 'state'] as const,
    registers: [this.registry],
  });
  readonly peerDocLinks = new client.Gauge({
    name: 'capsync_peer_doc_links',
    help: 'Document links this relay opened to peer relays',
    registers: [this.registry],
  });
  readonly peerBytesIn = new client.Counter({ name: 'capsync_peer_bytes_in_total', help: 'Bytes received on document links this relay opened to peers', registers: [this.registry] });
  readonly peerBytesOut = new client.Counter({ name: 'capsync_peer_bytes_out_total', help: 'Bytes sent on document links this relay opened to peers', registers: [this.registry] });
  readonly peerConvergeSeconds = new client.Histogram({
    name: 'capsync_peer_converge_seconds',
    help: 'From a document link (re)connecting until both relays hold what the other had (state-vector sync both ways, acknowledged)',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly replicationLagUpdates = new client.Gauge({
    name: 'capsync_replication_lag_updates',
    help: 'Changes of loaded documents a peer relay has not acknowledged as durable yet, by peer relay id',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  readonly replicationLagBytes = new client.Gauge({
    name: 'capsync_replication_lag_bytes',
    help: 'Bytes of those changes, by peer relay id',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  readonly quorumWaits = new client.Counter({
    name: 'capsync_quorum_acks_total',
    help: 'Quorum barriers of clients, by outcome (acked: a majority holds it; superseded: a newer barrier of the same connection took over; abandoned: the client left first; refused: a cluster relay whose database has no synchronous standby)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  constructor(options: { collectDefault?: boolean } = {}) {
    if (options.collectDefault !== false) client.collectDefaultMetrics({ register: this.registry, prefix: 'capsync_' });
  }
}

/**
 * A counter counted per message (messages and bytes, in and out) whose `inc` adds to a plain
 * number, handed to prom-client when the counter is read (every `get` and scrape runs its
 * `collect` first), so reads see the same totals. prom-client hashes and validates the labels
 * and returns an object on every `inc`: a relay answering 1,000 documents opened at once made
 * ~10,000 of them, ~10% of its CPU.
 */
function tallied<T extends string>(counter: client.Counter<T>): client.Counter<T> {
  const inc = counter.inc.bind(counter) as (labels: Partial<Record<T, string | number>> | number, value?: number) => void;
  let unlabelled = 0;
  const byLabel = new Map<string | number, { labels: Partial<Record<T, string | number>>; n: number }>();
  const flush = (): void => {
    if (unlabelled > 0) inc(unlabelled);
    unlabelled = 0;
    for (const entry of byLabel.values()) if (entry.n > 0) inc(entry.labels, entry.n);
    for (const entry of byLabel.values()) entry.n = 0;
  };
  // prom-client runs a metric's `collect` (a config option, not in its types) before each read.
  (counter as unknown as { collect: () => void }).collect = flush;
  counter.inc = ((labels?: Partial<Record<T, string | number>> | number, value?: number): void => {
    if (labels === undefined || typeof labels === 'number') {
      unlabelled += labels ?? 1;
      return;
    }
    const keys = Object.keys(labels);
    // The one-label form (`{ type }`) is tallied; anything else goes to prom-client as it is.
    if (keys.length !== 1) return void inc(labels, value);
    const key = labels[keys[0] as T]!;
    const entry = byLabel.get(key);
    if (entry) entry.n += value ?? 1;
    else byLabel.set(key, { labels: { ...labels }, n: value ?? 1 });
  }) as typeof counter.inc;
  return counter;
}
