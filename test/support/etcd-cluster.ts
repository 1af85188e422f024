/**
 * A real etcd cluster for the tests of the etcd lock backend: `size` members of the system's
 * etcd binary on 127.0.0.1, each on free ports with its own temporary data directory, with
 * election and heartbeat settings suited to loopback so elections take a fraction of a second.
 *
 * No etcd process outlives the test process: `close()` stops them, and a small watchdog
 * process (which holds a pipe to this process) SIGKILLs any that are left when this process
 * goes away by any means, SIGKILL included.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { executable } from './executable.js';
import { freePorts } from './free-ports.js';
import { tempDir } from './relay-fixture.js';
import { Watchdog } from './watchdog.js';

const CANDIDATES = ['/usr/bin/etcd', '/usr/local/bin/etcd'];

/** Raft timing for loopback: a leader is elected (or replaced) within about a second. */
export const HEARTBEAT_MS = 50;
export const ELECTION_TIMEOUT_MS = 500;

/**
 * The etcd binary: `ETCD_PATH` if set (and only it: a wrong path is not silently replaced by
 * another binary), else the usual install locations. Null if none exists.
 */
export function findEtcd(env: NodeJS.ProcessEnv = process.env): string | null {
  const configured = env['ETCD_PATH'];
  if (configured) return executable(configured) ? configured : null;
  return CANDIDATES.find(executable) ?? null;
}

/** Where `findEtcd` looked, for a message when it found nothing. */
export function etcdSearchDetail(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env['ETCD_PATH'];
  return configured ? ` (ETCD_PATH=${configured} is not an executable file)` : ` (looked in ${CANDIDATES.join(', ')})`;
}

export interface EtcdMember {
  readonly name: string;
  /** `http://127.0.0.1:<port>`: give it to an etcd client. Stable across restarts. */
  readonly clientUrl: string;
  readonly clientPort: number;
  /** The running process's pid; undefined while the member is down. Changes on restart. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** etcd's own log (stdout and stderr) of every run of this member. */
  readonly logFile: string;
  /** Sends `signal` (default SIGKILL) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited within `timeoutMs`. Resolves once it exited. */
  stop(timeoutMs?: number): Promise<void>;
  /** Freezes the process (SIGSTOP): its ports stay open, it answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Stops it if it runs, starts it again on the same ports and data, waits until it is healthy. */
  restart(timeoutMs?: number): Promise<void>;
  /** etcd's own view of this member: its id and the leader's id (fails if it does not answer). */
  status(timeoutMs?: number): Promise<{ memberId: string; leaderId: string }>;
}

export interface EtcdCluster {
  /** Client URLs of all members, in member order. */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /** The member the running members agree is the leader (retries until `timeoutMs`). */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  /**
   * Resolves once every running member reports healthy (it has a leader and a quorum; resume
   * paused members first). Rejects at once, with its log, if a member's process exits.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Kills every member and removes the data directories. */
  close(): Promise<void>;
}

export interface EtcdClusterOptions {
  size?: number;
  /** Binary; default `findEtcd()`. */
  etcdPath?: string;
  /** How long to wait for the cluster to become healthy. */
  startTimeoutMs?: number;
}

/**
 * Repeats `attempt` until it returns a value (not undefined), pausing `intervalMs` between
 * tries; rejects with the last error once `timeoutMs` has passed.
 */
async function retryUntil<T>(what: string, timeoutMs: number, attempt: () => Promise<T | undefined>, intervalMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (performance.now() >= deadline) {
      const why = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

class Member implements EtcdMember {
  readonly clientUrl: string;
  readonly logFile: string;
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    readonly clientPort: number,
    private readonly peerPort: number,
    private readonly dataDir: string,
    private readonly etcdPath: string,
    private readonly initialCluster: string,
    private readonly clusterToken: string,
    private readonly watchdog: Watchdog,
  ) {
    this.clientUrl = `http://127.0.0.1:${clientPort}`;
    this.logFile = path.join(path.dirname(dataDir), `${name}.log`);
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  start(): void {
    if (this.proc) throw new Error(`${this.name} is already running`);
    const peerUrl = `http://127.0.0.1:${this.peerPort}`;
    const log = fs.openSync(this.logFile, 'a');
    const args = [
      `--name=${this.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.clientUrl}`,
      `--advertise-client-urls=${this.clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${this.initialCluster}`,
      // Ignored once the data directory holds a member (a restart).
      `--initial-cluster-state=new`,
      `--initial-cluster-token=${this.clusterToken}`,
      `--heartbeat-interval=${HEARTBEAT_MS}`,
      `--election-timeout=${ELECTION_TIMEOUT_MS}`,
      // A member that was frozen or cut off does not disrupt the leader when it comes back.
      '--pre-vote=true',
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
    ];
    let proc: ChildProcess;
    try {
      proc = spawn(this.etcdPath, args, { stdio: ['ignore', log, log] });
    } finally {
      fs.closeSync(log);
    }
    const pid = proc.pid;
    if (pid === undefined) throw new Error(`could not start ${this.etcdPath}`);
    this.watchdog.watch(pid);
    this.proc = proc;
    this.exited = new Promise<void>((resolve) => {
      proc.once('exit', () => {
        this.watchdog.forget(pid);
        if (this.proc === proc) this.proc = null;
        resolve();
      });
    });
    proc.on('error', () => {});
    // Etcd members never keep the test process alive (close() or the watchdog ends them).
    proc.unref();
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    proc.kill(signal);
    // A frozen process would not act on SIGTERM until it is continued.
    if (signal !== 'SIGKILL') proc.kill('SIGCONT');
    await this.exited;
  }

  async stop(timeoutMs = 5_000): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    try {
      await this.kill('SIGTERM');
    } finally {
      clearTimeout(timer);
    }
  }

  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  async restart(timeoutMs = 10_000): Promise<void> {
    await this.stop();
    this.start();
    await this.waitHealthy(timeoutMs);
  }

  async status(timeoutMs = 1_000): Promise<{ memberId: string; leaderId: string }> {
    // The grpc-gateway JSON API of etcd 3.4.
    const res = await fetch(`${this.clientUrl}/v3/maintenance/status`, {
      method: 'POST',
      body: '{}',
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw new Error(`${this.name}: status answered HTTP ${res.status}`);
    const body = (await res.json()) as { header?: { member_id?: string }; leader?: string };
    return { memberId: body.header?.member_id ?? '', leaderId: body.leader ?? '0' };
  }

  /** etcd's /health: true once the member has a leader and can serve a quorum read. */
  async healthy(timeoutMs = 1_000): Promise<boolean> {
    const res = await fetch(`${this.clientUrl}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json()) as { health?: string | boolean };
    return res.ok && String(body.health) === 'true';
  }

  /** Polls until healthy; fails at once if the process is gone. */
  async waitHealthy(timeoutMs: number): Promise<void> {
    const state = await retryUntil(`${this.name} to become healthy`, timeoutMs, async () => {
      if (!this.running) return 'exited';
      return (await this.healthy()) ? 'healthy' : undefined;
    });
    if (state === 'exited') throw new Error(`etcd member ${this.name} exited; its log ends with:\n${this.logTail()}`);
  }

  /** The last lines of its log, for error messages (the log goes with the temp directory). */
  logTail(bytes = 2_000): string {
    try {
      const text = fs.readFileSync(this.logFile, 'utf8');
      return text.slice(-bytes);
    } catch {
      return '(no log)';
    }
  }
}

/**
 * Starts a cluster of `size` members (default 3) and resolves once every member is healthy.
 * Tries twice: a port found free may be taken by the time etcd binds it.
 */
export async function startEtcdCluster(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  try {
    return await startOnce(options);
  } catch (err) {
    if (!(err instanceof Error && err.message.includes('exited'))) throw err;
    return startOnce(options);
  }
}

async function startOnce(options: EtcdClusterOptions): Promise<EtcdCluster> {
  const size = options.size ?? 3;
  const etcdPath = options.etcdPath ?? findEtcd();
  if (!etcdPath) throw new Error(`etcd not found${etcdSearchDetail()}`);
  const tmp = tempDir('capsync-etcd-');
  const watchdog = new Watchdog(tmp.dir);
  const ports = await freePorts(size * 2);
  const names = Array.from({ length: size }, (_, i) => `m${i + 1}`);
  const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[size + i]!}`).join(',');
  const members = names.map(
    (name, i) => new Member(name, ports[i]!, ports[size + i]!, path.join(tmp.dir, name), etcdPath, initialCluster, path.basename(tmp.dir), watchdog),
  );
  const onExit = () => {
    for (const m of members) if (m.pid !== undefined) process.kill(m.pid, 'SIGKILL');
  };
  process.once('exit', onExit);

  let closed = false;
  const cluster: EtcdCluster = {
    endpoints: members.map((m) => m.clientUrl),
    members,
    async waitHealthy(timeoutMs = 10_000) {
      await Promise.all(members.filter((m) => m.running).map((m) => m.waitHealthy(timeoutMs)));
    },
    async leader(timeoutMs = 10_000) {
      return retryUntil('the members to agree on a leader', timeoutMs, async () => {
        const running = members.filter((m) => m.running);
        const statuses = await Promise.all(running.map((m) => m.status().catch(() => null)));
        const answered = statuses.filter((s) => s !== null);
        const leaderId = answered[0]?.leaderId;
        if (!leaderId || leaderId === '0' || answered.some((s) => s.leaderId !== leaderId)) return undefined;
        return running[statuses.findIndex((s) => s?.memberId === leaderId)];
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      process.off('exit', onExit);
      await Promise.all(members.map((m) => m.kill('SIGKILL')));
      watchdog.close();
      tmp.remove();
    },
  };

  try {
    for (const m of members) m.start();
    await cluster.waitHealthy(options.startTimeoutMs ?? 20_000);
  } catch (err) {
    const logs = members.map((m) => `--- ${m.name} ---\n${m.logTail()}`).join('\n');
    await cluster.close();
    if (err instanceof Error) err.message += `\n${logs}`;
    throw err;
  }
  return cluster;
}
