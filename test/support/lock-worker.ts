import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCRIPT = path.join(here, 'lock-worker-process.ts');

export type WorkerReply = { ok: true; token?: number; value?: unknown } | { ok: false; code: string; message: string };

/**
 * Parent side of lock-worker-process.ts: a capsync lock client in its own process, so it can
 * be paused (SIGSTOP) and resumed (SIGCONT) like a real process. Every call resolves with the
 * worker's reply (never rejects for a refusal): `{ ok: false, code }` carries the error code.
 */
export class LockWorker {
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: WorkerReply) => void>();
  /** Leases the worker reported lost (its local deadline passed): "key#token". */
  readonly lost: { key: string; token: number; at: number }[] = [];
  paused = false;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (msg: { id?: number; event?: string; key?: string; token?: number } & WorkerReply) => {
      if (msg.event === 'lost') this.lost.push({ key: msg.key!, token: msg.token!, at: performance.now() });
      if (msg.id === undefined) return;
      const resolve = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      resolve?.(msg);
    });
  }

  static async start(url: string, lockTimeoutMs: number): Promise<LockWorker> {
    const child = fork(SCRIPT, [url, String(lockTimeoutMs)], {
      execArgv: ['--conditions=source', '--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = new Promise<void>((resolve, reject) => {
      child.on('message', (m: { event?: string }) => m.event === 'ready' && resolve());
      child.once('exit', (code) => reject(new Error(`lock worker exited (${code}) before it was ready`)));
    });
    await withTimeout(ready, 20_000, 'lock worker to start');
    return new LockWorker(child);
  }

  call(cmd: Record<string, unknown>): Promise<WorkerReply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ id, ...cmd });
    });
  }

  pause(): void {
    this.paused = true;
    this.child.kill('SIGSTOP');
  }
  resume(): void {
    this.paused = false;
    this.child.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGCONT');
    this.child.kill('SIGKILL');
    await exited;
  }
}
