/**
 * A real relay child process (see relay-process.ts) that can be killed and started again on
 * the same port with the same SQLite data directory, so clients that hold its URL reconnect by
 * themselves, as they would to a restarted production relay.
 *
 * The first start takes a free port (port 0); later starts ask for that port explicitly
 * (`--port` given twice: the CLI's parser keeps the last value, so relay-process.ts needs no
 * change). Linux lets a listener rebind a port at once after the old process died
 * (SO_REUSEADDR); if something else grabbed the port in between (an outgoing connection may
 * take it as its ephemeral port), the start is retried a few times.
 */
import { tempDir } from './relay-fixture.js';
import { killRelay, spawnRelay, type RelayProcess } from './relay-process.js';

export class RestartableRelay {
  private process: RelayProcess | null = null;
  private last: RelayProcess | null = null;
  private port = 0;
  private urls: { url: string; httpUrl: string } | null = null;
  /** Starts, including the first one. */
  starts = 0;
  /**
   * Exits nobody asked for (the process died by itself while it was supposed to run): the exit
   * code or signal and its last log lines.
   */
  readonly unexpectedExits: { code: number | null; signal: NodeJS.Signals | null; lastLogs: Record<string, unknown>[]; stderr: string }[] = [];

  private constructor(
    readonly dataDir: string,
    private readonly removeDir: () => void,
    private readonly baseArgs: string[],
    private readonly readyTimeoutMs: number | undefined,
  ) {}

  /**
   * Starts a relay on a free port with a fresh data directory; `args` are CLI flags for every
   * start. `readyTimeoutMs`: how long each start may take to be ready (spawnRelay's default).
   */
  static async start(args: string[] = [], options: { readyTimeoutMs?: number } = {}): Promise<RestartableRelay> {
    const dir = tempDir('capsync-restartable-');
    const relay = new RestartableRelay(dir.dir, dir.remove, args, options.readyTimeoutMs);
    await relay.start();
    return relay;
  }

  /** The JSON log lines of the running process (or of the last one), for diagnostics. */
  get logs(): Record<string, unknown>[] {
    return (this.process ?? this.last)?.logs ?? [];
  }

  get running(): boolean {
    return this.process !== null;
  }
  get url(): string {
    return this.urlsOrThrow().url;
  }
  get httpUrl(): string {
    return this.urlsOrThrow().httpUrl;
  }

  /** Starts the relay again (same port, same data); `extraArgs` apply to this start only. */
  async start(extraArgs: string[] = []): Promise<void> {
    if (this.process) throw new Error('relay already running');
    const args = ['--data', this.dataDir, ...this.baseArgs, ...extraArgs];
    for (let attempt = 1; ; attempt++) {
      try {
        this.process = await spawnRelay(this.port ? [...args, '--port', String(this.port)] : args, {}, this.readyTimeoutMs);
        break;
      } catch (err) {
        if (attempt >= 5 || !/EADDRINUSE/.test(String((err as Error).message))) throw err;
      }
    }
    this.starts++;
    const p = this.process;
    this.last = p;
    void p.exited.then(({ code, signal }) => {
      if (this.process !== p) return;
      this.process = null;
      this.unexpectedExits.push({ code, signal, lastLogs: p.logs.slice(-10), stderr: p.stderr() });
    });
    if (!this.port) {
      this.port = Number(new URL(this.process.httpUrl).port);
      this.urls = { url: this.process.url, httpUrl: this.process.httpUrl };
    }
  }

  /** SIGKILL: a crash (only acknowledged updates are promised to survive). SIGTERM: a graceful stop. */
  async stop(signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL'): Promise<void> {
    const p = this.process;
    if (!p) return;
    this.process = null;
    await killRelay(p, signal);
  }

  /** SIGSTOP: the process freezes (a long GC pause, a VM migration); its sockets stay open. */
  pause(): void {
    this.process?.child.kill('SIGSTOP');
  }

  /** SIGCONT after `pause`. */
  resume(): void {
    this.process?.child.kill('SIGCONT');
  }

  /** The document's state on the relay, as a binary update (HTTP API). */
  async docUpdate(name: string): Promise<Uint8Array> {
    const res = await fetch(`${this.httpUrl}/v1/docs/${encodeURIComponent(name)}/update`);
    if (!res.ok) throw new Error(`GET update of ${name}: ${res.status} ${await res.text()}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** The document's JSON view (HTTP API). */
  async docJson(name: string): Promise<unknown> {
    const res = await fetch(`${this.httpUrl}/v1/docs/${encodeURIComponent(name)}`);
    if (!res.ok) throw new Error(`GET ${name}: ${res.status} ${await res.text()}`);
    return res.json();
  }

  async dispose(): Promise<void> {
    await this.stop('SIGKILL');
    this.removeDir();
  }

  private urlsOrThrow(): { url: string; httpUrl: string } {
    if (!this.urls) throw new Error('relay never started');
    return this.urls;
  }
}
