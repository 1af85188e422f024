/**
 * A relay under test for the lock benchmark: the real `capsync-server` CLI
 * (packages/server/src/cli.ts, run from source with tsx) as a child process on 127.0.0.1,
 * default SQLite storage (fsync per commit) in a fresh temporary data directory, and the
 * embedded lock authority or, with `etcd`, `--etcd <endpoints>`.
 *
 * Every relay started here is stopped when the bench exits (SIGKILL from an exit hook, on
 * error too); one that loses the bench's IPC channel (the bench was killed) shuts itself down
 * (relay-guard.ts).
 */
import { freePort, killAllRelayProcesses, RelayCliProcess } from '../relay-cli-process.js';

/** SIGKILLs every relay still running and removes its data directory (synchronous, for exit handlers). */
export const killAllRelays = killAllRelayProcesses;

const STOP_TIMEOUT_MS = 10_000;

export interface RelayStartOptions {
  /** etcd client URLs: `--etcd` (else the embedded lock authority). */
  etcd?: string[];
  /** Extra Node arguments (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

export interface MetricsSnapshot {
  /** Sum of seconds, count and cumulative buckets (upper bound in seconds -> count) of `capsync_lock_op_seconds`, by op. */
  opSeconds: Map<string, { sum: number; count: number; buckets: Map<number, number> }>;
  /** capsync_lock_refusals_total plus capsync_lock_unavailable_total. */
  refusals: number;
}

export class RelayProcess {
  private constructor(private readonly cli: RelayCliProcess) {}

  get pid(): number {
    return this.cli.pid;
  }

  get port(): number {
    return this.cli.port;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get httpUrl(): string {
    return this.cli.httpUrl;
  }

  /** The CLI command line this relay runs, for the report (data directory and ports elided). */
  get commandLine(): string {
    return this.cli.commandLine;
  }

  /** Starts a relay (etcd: the lock authority is that cluster) and resolves once it answers /healthz. */
  static async start(options: RelayStartOptions = {}): Promise<RelayProcess> {
    const flags = options.etcd ? ['--etcd', options.etcd.join(',')] : [];
    for (let attempt = 1; ; attempt++) {
      try {
        const port = await freePort();
        return new RelayProcess(
          await RelayCliProcess.start({ port, flags, dataDirPrefix: 'capsync-bench-locks-', ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}) }),
        );
      } catch (err) {
        // The port found free may have been taken meanwhile: one more try on another one.
        if (attempt >= 2 || !(err instanceof Error && err.message.includes('exited'))) throw err;
      }
    }
  }

  /** CPU time (user + system) of the relay process so far, microseconds; NaN off Linux. */
  cpuMicros(): number {
    return this.cli.cpuMicros();
  }

  /** The lock counters of the relay's /metrics. */
  async metrics(): Promise<MetricsSnapshot> {
    const res = await this.cli.fetch('/metrics', 5_000);
    const text = await res.text();
    const opSeconds: MetricsSnapshot['opSeconds'] = new Map();
    const entry = (op: string) => {
      let e = opSeconds.get(op);
      if (!e) opSeconds.set(op, (e = { sum: 0, count: 0, buckets: new Map() }));
      return e;
    };
    let refusals = 0;
    for (const line of text.split('\n')) {
      const m = /^capsync_lock_op_seconds_(sum|count|bucket)\{([^}]*)\} (\S+)$/.exec(line);
      if (m) {
        const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
        const e = entry(labels['op'] ?? '?');
        if (m[1] === 'bucket') e.buckets.set(labels['le'] === '+Inf' ? Infinity : Number(labels['le']), Number(m[3]));
        else e[m[1] as 'sum' | 'count'] = Number(m[3]);
        continue;
      }
      const r = /^capsync_lock_(?:refusals|unavailable)_total(?:\{[^}]*\})? (\S+)$/.exec(line);
      if (r) refusals += Number(r[1]);
    }
    return { opSeconds, refusals };
  }

  /** SIGTERM (the CLI closes and exits), SIGKILL if it takes too long; removes the data directory. */
  stop(): Promise<void> {
    return this.cli.stop(this.cli.profiled ? 10 * STOP_TIMEOUT_MS : STOP_TIMEOUT_MS);
  }
}
