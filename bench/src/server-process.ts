/**
 * Parent side of a server under test: starts one server kind as its own Node process on port
 * 0 (with --expose-gc and an IPC channel), and asks it for memory and CPU time. Every started
 * process is tracked and killed when the bench exits, on error too.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ControlReply, ControlRequest } from './control.js';

/** The servers of the single-server benchmark (relay-load.ts). */
export const SERVER_KINDS = ['capsync-sqlite', 'capsync-baseline', 'capsync-memory', 'reference', 'raw-ws'] as const;
/** Servers that run as one of several instances of a cluster (cluster.ts), given its store's address. */
export const CLUSTER_KINDS = ['capsync-postgres', 'hocuspocus-redis'] as const;
export type ServerKind = (typeof SERVER_KINDS)[number] | (typeof CLUSTER_KINDS)[number];

/** How each server kind is described in the results. */
export const SERVER_LABELS: Record<ServerKind, string> = {
  'capsync-sqlite': 'capsync (sqlite, fsync per commit)',
  'capsync-baseline': 'capsync at the --baseline commit (sqlite, fsync per commit)',
  'capsync-memory': 'capsync (memory)',
  'capsync-postgres': 'capsync (PostgreSQL cluster mode)',
  'hocuspocus-redis': 'Hocuspocus 4 with @hocuspocus/extension-redis (in memory)',
  reference: '@y/websocket-server 0.1.1',
  'raw-ws': 'raw ws broadcast',
};

const here = path.dirname(fileURLToPath(import.meta.url));
const benchDir = path.resolve(here, '..');
const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
/**
 * How long a server may take to close and exit before it is killed. An overloaded server can
 * be stuck in its backlog for much longer; a profiled one gets more time so it can write its
 * profile (which only happens on a clean exit).
 */
const STOP_TIMEOUT_MS = 5_000;
const PROFILED_STOP_TIMEOUT_MS = 120_000;

/** Root of the checkout `capsync-baseline` runs from (see baseline-checkout.ts). */
let baselineRoot: string | null = null;

/** Root of the checkout `capsync-sqlite` runs from when compared with a baseline (see relay-load.ts). */
let candidateRoot: string | null = null;

/** Where the `capsync-baseline` server kind runs from: a checkout of another commit. */
export function useBaseline(root: string, label: string): void {
  baselineRoot = root;
  SERVER_LABELS['capsync-baseline'] = label;
}

/**
 * Where `capsync-sqlite` runs from: a checkout like the baseline's, so the two differ only in
 * their commit. Run from this working tree instead, the same commit measured 1.26x the CPU
 * and 1.20x the p99 of itself run from a checkout (A/A run, 2026-12-06): the ratio measured
 * the two setups, not the two commits.
 */
export function useCandidate(root: string, label: string): void {
  candidateRoot = root;
  SERVER_LABELS['capsync-sqlite'] = label;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kills whatever server processes are still running (synchronous, for exit handlers). */
export function killAllServers(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAllServers);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAllServers();
      process.exit(130);
    });
  }
}

export class ServerProcess {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(reply: ControlReply): void; reject(err: Error): void }>();
  private readonly exited: Promise<void>;

  private constructor(
    readonly kind: ServerKind,
    private readonly child: ChildProcess,
    readonly port: number,
    private readonly tempDir: string | null,
    exited: Promise<void>,
  ) {
    this.exited = exited;
    child.on('message', (reply: ControlReply) => {
      if (!('id' in reply)) return;
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      waiter?.resolve(reply);
    });
    void exited.then(() => {
      for (const waiter of this.pending.values()) waiter.reject(new Error(`${kind} server exited`));
      this.pending.clear();
    });
  }

  /**
   * Starts a server of `kind` and resolves once it listens. `nodeArgs` go to its Node
   * (e.g. `--cpu-prof`; the profile is written when the server stops); `serverArgs` to the
   * entry point (capsync-postgres: the database URL; hocuspocus-redis: the Redis port).
   */
  static async start(kind: ServerKind, nodeArgs: string[] = [], serverArgs: string[] = []): Promise<ServerProcess> {
    installExitHook();
    const tempDir = kind === 'capsync-sqlite' || kind === 'capsync-baseline' ? fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-bench-')) : null;
    const [entry, ...args] = entrypoint(kind, tempDir);
    if (kind === 'capsync-baseline' && !baselineRoot) throw new Error('capsync-baseline needs --baseline <git-ref>');
    // The baseline runs the same entry point from its own checkout, with its own packages.
    const fromDir =
      kind === 'capsync-baseline' ? path.join(baselineRoot!, 'bench') : kind === 'capsync-sqlite' && candidateRoot ? path.join(candidateRoot, 'bench') : benchDir;
    // BENCH_DIST=1: the packages' build output (dist, what `npm start` runs; build first) instead
    // of their source through tsx, whose transform adds a `__name` call to every function made.
    const child = fork(path.join(fromDir, 'src', 'servers', entry!), [...args, ...serverArgs], {
      cwd: fromDir,
      // Hocuspocus has a `source` condition of its own (its TypeScript sources): it runs its build.
      execArgv: [...(process.env.BENCH_DIST || kind === 'hocuspocus-redis' ? [] : ['--conditions=source']), '--import', 'tsx', '--expose-gc', ...nodeArgs],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // bench/tsconfig.json maps Hocuspocus's packages to their declarations for the type check;
      // tsx would follow that mapping at run time too, so its server runs with the base config.
      ...(kind === 'hocuspocus-redis' ? { env: { ...process.env, TSX_TSCONFIG_PATH: path.join(benchDir, '..', 'tsconfig.base.json') } } : {}),
    });
    running.add(child);
    const exited = new Promise<void>((resolve) =>
      child.once('exit', () => {
        running.delete(child);
        resolve();
      }),
    );
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${kind} server did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
        child.on('message', (msg: ControlReply) => {
          if (msg.type !== 'ready') return;
          clearTimeout(timer);
          resolve(msg.port);
        });
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`${kind} server exited before it was ready (code ${child.exitCode})`));
        });
      });
      return new ServerProcess(kind, child, port, tempDir, exited);
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** WebSocket URL of document `docName` on this server. */
  docUrl(docName: string): string {
    return `ws://127.0.0.1:${this.port}/${docName}`;
  }

  /** Server memory after a forced full GC. */
  async memory(): Promise<NodeJS.MemoryUsage> {
    const reply = await this.request('memory');
    if (reply.type !== 'memory') throw new Error(`unexpected reply ${reply.type}`);
    return reply.usage;
  }

  /**
   * Server CPU time (user + system) so far and when the server measured it (its monotonic
   * clock), in microseconds. A busy server answers late: divide by its own clock, not ours.
   */
  async cpu(): Promise<{ cpuMicros: number; atMicros: number }> {
    const reply = await this.request('cpu');
    if (reply.type !== 'cpu') throw new Error(`unexpected reply ${reply.type}`);
    return { cpuMicros: reply.usage.user + reply.usage.system, atMicros: reply.atMicros };
  }

  /** Asks the server to close and exit; kills it if it does not within a few seconds. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const profiled = this.child.spawnargs.some((a) => a.startsWith('--cpu-prof'));
      const killer = setTimeout(() => this.child.kill('SIGKILL'), profiled ? PROFILED_STOP_TIMEOUT_MS : STOP_TIMEOUT_MS);
      try {
        this.child.send({ id: this.nextId++, type: 'stop' } satisfies ControlRequest);
      } catch {
        this.child.kill('SIGKILL');
      }
      await this.exited;
      clearTimeout(killer);
    }
    if (this.tempDir) fs.rmSync(this.tempDir, { recursive: true, force: true });
  }

  private request(type: 'memory' | 'cpu'): Promise<ControlReply> {
    const id = this.nextId++;
    return new Promise<ControlReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.kind} server did not answer ${type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.child.send({ id, type } satisfies ControlRequest);
    });
  }
}

function entrypoint(kind: ServerKind, tempDir: string | null): string[] {
  switch (kind) {
    case 'capsync-sqlite':
    case 'capsync-baseline':
      return ['capsync.ts', 'sqlite', tempDir!];
    case 'capsync-memory':
      return ['capsync.ts', 'memory'];
    case 'capsync-postgres':
      return ['capsync.ts', 'postgres'];
    case 'hocuspocus-redis':
      return ['hocuspocus.ts'];
    case 'reference':
      return ['reference.ts'];
    case 'raw-ws':
      return ['raw-ws.ts'];
  }
}

/** Starts a server, runs `fn` with it, and always stops it. */
export async function withServer<T>(kind: ServerKind, nodeArgs: string[], fn: (server: ServerProcess) => Promise<T>): Promise<T> {
  const server = await ServerProcess.start(kind, nodeArgs);
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
}
