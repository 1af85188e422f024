/**
 * The relay CLI (packages/server/src/cli.ts, run from source through tsx) as a process of its
 * own, for benchmarks that measure a real relay from outside: started on a given port with a
 * fresh data directory, ready once it answers /healthz, stopped with SIGTERM (SIGKILL if it
 * takes too long). Every started relay is SIGKILLed and its data directory removed when the
 * bench process exits, on error too.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readProcessCpuMicros } from './locks/cpu.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const benchDir = path.resolve(here, '..');
const CLI = path.resolve(benchDir, '../packages/server/src/cli.ts');
const GUARD = pathToFileURL(path.resolve(here, 'locks/relay-guard.ts')).href;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** Running relays and their data directories. */
const running = new Map<ChildProcess, string>();
let hooked = false;

/** SIGKILLs every relay still running and removes its data directory (synchronous, for exit handlers). */
export function killAllRelayProcesses(): void {
  for (const [child, dataDir] of running) {
    child.kill('SIGKILL');
    // Linux removes files a dying process still holds open.
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  running.clear();
}

/** A port that was free a moment ago (the relay binds it right after). */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface RelayCliOptions {
  port: number;
  /** CLI flags besides --host, --port, --data and --log-level. */
  flags: string[];
  /** Prefix of the temporary data directory's name. */
  dataDirPrefix: string;
  /** Extra Node arguments (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /**
   * The relay's stderr: 'inherit', or piped to ours with each line prefixed by this label
   * (the last lines are kept for error messages either way when piped).
   */
  stderrLabel?: string;
}

export class RelayCliProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    /** The CLI arguments it runs with. */
    readonly args: string[],
    private readonly dataDir: string,
    private readonly exited: Promise<void>,
    private readonly tail: string[],
  ) {}

  /** Starts the relay and resolves once it answers /healthz; rejects (and cleans up) if it exits first or takes too long. */
  static async start(o: RelayCliOptions): Promise<RelayCliProcess> {
    if (!hooked) {
      hooked = true;
      process.on('exit', killAllRelayProcesses);
    }
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), o.dataDirPrefix));
    // Every bench client connects from loopback: no per-address cap (it would refuse past 1000).
    const args = ['--host', '127.0.0.1', '--port', String(o.port), '--data', dataDir, '--log-level', 'error', '--max-connections-per-address', '0', ...o.flags];
    const child = fork(CLI, args, {
      cwd: benchDir,
      execArgv: ['--conditions=source', '--import', 'tsx', '--import', GUARD, ...(o.nodeArgs ?? [])],
      // Settings only from the flags: no CAPSYNC_* variable of the caller's shell may change the setup.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CAPSYNC_'))), BENCH_LOCKS_DATA_DIR: dataDir },
      stdio: ['ignore', o.stderrLabel === undefined ? 'inherit' : 'ignore', o.stderrLabel === undefined ? 'inherit' : 'pipe', 'ipc'],
    });
    const tail: string[] = [];
    if (o.stderrLabel !== undefined) forwardStderr(child, o.stderrLabel, tail);
    running.set(child, dataDir);
    const exited = new Promise<void>((resolve) =>
      child.once('exit', () => {
        running.delete(child);
        resolve();
      }),
    );
    let gone = false;
    void exited.then(() => (gone = true));
    const name = o.stderrLabel ?? 'relay';
    try {
      const deadline = performance.now() + START_TIMEOUT_MS;
      for (;;) {
        if (gone) throw new Error(`${name} (${args.join(' ')}) exited before it was ready (code ${child.exitCode})${tail.length ? `: ${tail.join(' | ')}` : ''}`);
        const ok = await fetch(`http://127.0.0.1:${o.port}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (ok && !gone) break;
        if (performance.now() > deadline) throw new Error(`${name} did not answer /healthz within ${START_TIMEOUT_MS} ms`);
        // A process starting up has nothing to wait on but its port: poll.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
    return new RelayCliProcess(child, o.port, args, dataDir, exited, tail);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The command line, for reports (data directory and ports elided). */
  get commandLine(): string {
    return ['capsync-server', ...this.args.map((a) => (a.startsWith('/') || /^\d+$/.test(a) ? '…' : a.replace(/:\d+$/, ':…')))].join(' ');
  }

  /** The relay's last lines on stderr, when piped (for error messages). */
  recentStderr(): string {
    return this.tail.join('\n');
  }

  /** CPU time (user + system) of the relay process so far, microseconds; NaN off Linux. */
  cpuMicros(): number {
    return readProcessCpuMicros(this.pid);
  }

  /** GET `path` on the relay's HTTP API. */
  fetch(pathname: string, timeoutMs: number): Promise<Response> {
    return fetch(`${this.httpUrl}${pathname}`, { signal: AbortSignal.timeout(timeoutMs) });
  }

  /** SIGTERM (the CLI closes and exits), SIGKILL after `timeoutMs`; removes the data directory. */
  async stop(timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
    if (this.alive) {
      const killer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      this.child.kill('SIGTERM');
      await this.exited;
      clearTimeout(killer);
    }
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Whether it runs with a CPU profiler (which needs longer to stop: it writes the profile on exit). */
  get profiled(): boolean {
    return this.child.spawnargs.some((a) => a.startsWith('--cpu-prof'));
  }
}

/** Copies the relay's stderr to ours, each line prefixed with `[label]`, keeping the last 20 in `tail`. */
function forwardStderr(child: ChildProcess, label: string, tail: string[]): void {
  let partial = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > 20) tail.shift();
      process.stderr.write(`[${label}] ${line.length > 400 ? line.slice(0, 400) + '…' : line}\n`);
    }
  });
}
