/**
 * A relay of the convergence benchmark: the real `capsync-server` CLI
 * (packages/server/src/cli.ts, run from source with tsx) as a child process on 127.0.0.1, on
 * a port chosen before it starts (its peer needs the address before either runs), SQLite
 * storage in a fresh temporary data directory unless told otherwise.
 *
 * Every relay started here is SIGKILLed when the bench exits (on error too); one that loses
 * the bench's IPC channel (the bench was killed) shuts itself down (../locks/relay-guard.ts).
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readProcessCpuMicros } from '../locks/cpu.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const benchDir = path.resolve(here, '../..');
const CLI = path.resolve(benchDir, '../packages/server/src/cli.ts');
/** The relays' shared relay credential (open relays trust only it as a peer). */
const BENCH_MESH_TOKEN = 'bench-mesh-token';
const GUARD = pathToFileURL(path.resolve(here, '../locks/relay-guard.ts')).href;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

const running = new Map<ChildProcess, string>();
let hooked = false;

/** SIGKILLs every relay still running and removes its data directory (synchronous, for exit handlers). */
export function killAllConvergenceRelays(): void {
  for (const [child, dataDir] of running) {
    child.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  running.clear();
}

function installExitHook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAllConvergenceRelays);
}

/** A port that was free a moment ago. */
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
    private readonly child: ChildProcess,
    readonly args: string[],
    private readonly dataDir: string,
    private readonly exited: Promise<void>,
    private readonly stderrTail: () => string,
  ) {}

  get pid(): number {
    return this.child.pid!;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.spec.port}`;
  }

  /** WebSocket URL of document `docName`. */
  docUrl(docName: string): string {
    return `ws://127.0.0.1:${this.spec.port}/${encodeURIComponent(docName)}`;
  }

  /** The command line, for the report (data directory and ports elided). */
  get commandLine(): string {
    return ['capsync-server', ...this.args.map((a) => (a.startsWith('/') || /^\d+$/.test(a) ? '…' : a.replace(/:\d+$/, ':…')))].join(' ');
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The relay's last lines on stderr (for error messages). */
  recentStderr(): string {
    return this.stderrTail();
  }

  static async start(spec: RelaySpec): Promise<BenchRelay> {
    installExitHook();
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-bench-converge-'));
    const args = ['--host', '127.0.0.1', '--port', String(spec.port), '--data', dataDir, '--relay-id', spec.relayId, '--log-level', 'error'];
    if (spec.storage !== 'sqlite') args.push('--storage', spec.storage);
    // Open relays trust only a shared peer token as a peer's credential.
    args.push('--peer-token', BENCH_MESH_TOKEN);
    for (const peer of spec.peers) args.push('--peer', peer);
    args.push(...spec.extraArgs);
    const child = fork(CLI, args, {
      cwd: benchDir,
      execArgv: ['--conditions=source', '--import', 'tsx', '--import', GUARD],
      // Settings only from the flags: no CAPSYNC_* variable of the caller's shell may change the setup.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CAPSYNC_'))), BENCH_LOCKS_DATA_DIR: dataDir },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    // Warnings and errors of the relay go to our stderr, prefixed; the last few are kept for errors.
    const tail: string[] = [];
    let partial = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (line.trim() === '') continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        process.stderr.write(`[relay ${spec.relayId}] ${line.length > 400 ? line.slice(0, 400) + '…' : line}\n`);
      }
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
        if (gone) throw new Error(`relay ${spec.relayId} (${args.join(' ')}) exited before it was ready (code ${child.exitCode}): ${tail.join(' | ')}`);
        const ok = await fetch(`http://127.0.0.1:${spec.port}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (ok && !gone) break;
        if (performance.now() > deadline) throw new Error(`relay ${spec.relayId} did not answer /healthz within ${START_TIMEOUT_MS} ms`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
    return new BenchRelay(spec, child, args, dataDir, exited, () => tail.join('\n'));
  }

  /** CPU time (user + system) of the relay process so far, microseconds; NaN off Linux. */
  cpuMicros(): number {
    return readProcessCpuMicros(this.pid);
  }

  /** The document's state as one update (GET /v1/docs/:name/update). */
  async docState(docName: string): Promise<Uint8Array> {
    const res = await fetch(`${this.httpUrl}/v1/docs/${encodeURIComponent(docName)}/update`, { signal: AbortSignal.timeout(60_000) });
    if (!res.ok) throw new Error(`relay ${this.spec.relayId}: GET ${docName}/update answered ${res.status}: ${await res.text()}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** The relay's /metrics text. */
  async metricsText(): Promise<string> {
    const res = await fetch(`${this.httpUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
    return res.text();
  }

  /** SIGTERM (the CLI closes and exits), SIGKILL if it takes too long; removes the data directory. */
  async stop(): Promise<void> {
    if (this.alive) {
      const killer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      this.child.kill('SIGTERM');
      await this.exited;
      clearTimeout(killer);
    }
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}
