/**
 * A relay of the convergence benchmark: the real `capsync-server` CLI
 * (packages/server/src/cli.ts, run from source with tsx) as a child process on 127.0.0.1, on
 * a port chosen before it starts (its peer needs the address before either runs), SQLite
 * storage in a fresh temporary data directory unless told otherwise.
 *
 * Every relay started here is SIGKILLed when the bench exits (on error too); one that loses
 * the bench's IPC channel (the bench was killed) shuts itself down (../locks/relay-guard.ts).
 */
import { freePort, killAllRelayProcesses, RelayCliProcess } from '../relay-cli-process.js';

export { freePort };

/** SIGKILLs every relay still running and removes its data directory (synchronous, for exit handlers). */
export const killAllConvergenceRelays = killAllRelayProcesses;

/** The relays' shared relay credential (open relays trust only it as a peer). */
const BENCH_MESH_TOKEN = 'bench-mesh-token';

export interface RelaySpec {
  /** `--relay-id`. */
  relayId: string;
  port: number;
  /** `--peer` URLs. */
  peers: string[];
  storage: 'sqlite' | 'memory';
  /** More CLI flags. */
  extraArgs: string[];
}

export class BenchRelay {
  private constructor(
    readonly spec: RelaySpec,
    private readonly cli: RelayCliProcess,
  ) {}

  static async start(spec: RelaySpec): Promise<BenchRelay> {
    const flags = ['--relay-id', spec.relayId];
    if (spec.storage !== 'sqlite') flags.push('--storage', spec.storage);
    flags.push('--peer-token', BENCH_MESH_TOKEN);
    // The proxy counts bytes per connection, by request path: that is one document's only while
    // each document has a socket of its own. Since issue 12 P5 peers share one multiplexed
    // socket per pair (every document and the heartbeats on it), so this bench keeps measuring
    // the socket-per-document links, as a relay linked with an older peer still uses them.
    // Measuring the pair socket needs per-session byte counts (not yet).
    flags.push('--mux', 'off');
    for (const peer of spec.peers) flags.push('--peer', peer);
    flags.push(...spec.extraArgs);
    const cli = await RelayCliProcess.start({ port: spec.port, flags, dataDirPrefix: 'capsync-bench-converge-', stderrLabel: `relay ${spec.relayId}` });
    return new BenchRelay(spec, cli);
  }

  get pid(): number {
    return this.cli.pid;
  }

  get httpUrl(): string {
    return this.cli.httpUrl;
  }

  /** WebSocket URL of document `docName`. */
  docUrl(docName: string): string {
    return `ws://127.0.0.1:${this.spec.port}/${encodeURIComponent(docName)}`;
  }

  /** The command line, for the report (data directory and ports elided). */
  get commandLine(): string {
    return this.cli.commandLine;
  }

  get alive(): boolean {
    return this.cli.alive;
  }

  /** The relay's last lines on stderr (for error messages). */
  recentStderr(): string {
    return this.cli.recentStderr();
  }

  /** CPU time (user + system) of the relay process so far, microseconds; NaN off Linux. */
  cpuMicros(): number {
    return this.cli.cpuMicros();
  }

  /** The document's state as one update (GET /v1/docs/:name/update). */
  async docState(docName: string): Promise<Uint8Array> {
    const res = await this.cli.fetch(`/v1/docs/${encodeURIComponent(docName)}/update`, 60_000);
    if (!res.ok) throw new Error(`relay ${this.spec.relayId}: GET ${docName}/update answered ${res.status}: ${await res.text()}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** The relay's /metrics text. */
  async metricsText(): Promise<string> {
    return (await this.cli.fetch('/metrics', 10_000)).text();
  }

  /** SIGTERM (the CLI closes and exits), SIGKILL if it takes too long; removes the data directory. */
  stop(): Promise<void> {
    return this.cli.stop();
  }
}
