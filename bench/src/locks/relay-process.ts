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
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readProcessCpuMicros } from './cpu.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const benchDir = path.resolve(here, '../..');
const CLI = path.resolve(benchDir, '../packages/server/src/cli.ts');
const GUARD = pathToFileURL(path.join(here, 'relay-guard.ts')).href;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** Running relays and their data directories. */
const running = new Map<ChildProcess, string>();
let hooked = false;

/** SIGKILLs every relay still running and removes its data directory (synchronous, for exit handlers). */
export function killAllRelays(): void {
  for (const [child, dataDir] of running) {
    child.kill('SIGKILL');
    // Linux removes files a dying process still holds open.
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  running.clear();
}

function installExitHook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAllRelays);
}

/** A port that was free a moment ago (the relay binds it right after). */
async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

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
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly args: string[],
    private readonly dataDir: string,
    private readonly exited: Promise<void>,
  ) {}

  get pid(): number {
    return this.child.pid!;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The CLI command line this relay runs, for the report (data directory and port elided). */
  get commandLine(): string {
    return ['capsync-server', ...this.args.map((a) => (a.startsWith('/') || /^\d+$/.test(a) ? '…' : a))].join(' ');
  }

  /** Starts a relay (etcd: the lock authority is that cluster) and resolves once it answers /healthz. */
  static async start(options: RelayStartOptions = {}): Promise<RelayProcess> {
    installExitHook();
    for (let attempt = 1; ; attempt++) {
      try {
        return await RelayProcess.startOnce(options);
      } catch (err) {
        // The port found free may have been taken meanwhile: one more try on another one.
        if (attempt >= 2 || !(err instanceof Error && err.message.includes('exited'))) throw err;
      }
    }
  }

  private static async startOnce(options: RelayStartOptions): Promise<RelayProcess> {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-bench-locks-'));
    const port = await freePort();
    const args = ['--host', '127.0.0.1', '--port', String(port), '--data', dataDir, '--log-level', 'error'];
    if (options.etcd) args.push('--etcd', options.etcd.join(','));
    const child = fork(CLI, args, {
      cwd: benchDir,
      execArgv: ['--conditions=source', '--import', 'tsx', '--import', GUARD, ...(options.nodeArgs ?? [])],
      // Settings only from the flags: no CAPSYNC_* variable of the caller's shell may change the setup.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CAPSYNC_'))), BENCH_LOCKS_DATA_DIR: dataDir },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    running.set(child, dataDir);
    const exited = new Promise<void>((resolve) =>
      child.once('exit', () => {
        running.delete(child);
        resolve();
      }),
    );
    let gone = false;
    void exited.then(() => (gone = true));
    try {
      const deadline = performance.now() + START_TIMEOUT_MS;
      for (;;) {
        if (gone) throw new Error(`relay (${args.join(' ')}) exited before it was ready (code ${child.exitCode})`);
        const ok = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (ok && !gone) break;
        if (performance.now() > deadline) throw new Error(`relay did not answer /healthz within ${START_TIMEOUT_MS} ms`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
    return new RelayProcess(child, port, args, dataDir, exited);
  }

  /** CPU time (user + system) of the relay process so far, microseconds; NaN off Linux. */
  cpuMicros(): number {
    return readProcessCpuMicros(this.pid);
  }

  /** The lock counters of the relay's /metrics. */
  async metrics(): Promise<MetricsSnapshot> {
    const res = await fetch(`${this.httpUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
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
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const profiled = this.child.spawnargs.some((a) => a.startsWith('--cpu-prof'));
      const killer = setTimeout(() => this.child.kill('SIGKILL'), profiled ? 10 * STOP_TIMEOUT_MS : STOP_TIMEOUT_MS);
      this.child.kill('SIGTERM');
      await this.exited;
      clearTimeout(killer);
    }
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}
