/**
 * The bench's handle on the proxy process (proxy-process.ts): starts it with its routes,
 * partitions and heals the link, and reads the byte counts of one document's peer link.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProxyReply, ProxyRequest } from './proxy-protocol.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Reply<T extends ProxyReply['type']> = Extract<ProxyReply, { type: T }>;

const running = new Set<ChildProcess>();
let hooked = false;

export function killAllProxies(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

export class PartitionProxy {
  private nextId = 1;
  private readonly pending = new Map<number, (reply: ProxyReply) => void>();

  private constructor(
    private readonly child: ChildProcess,
    /** Listening port of each route. */
    readonly ports: Record<string, number>,
    private readonly exited: Promise<void>,
  ) {
    child.on('message', (reply: ProxyReply) => {
      if (!('id' in reply)) return;
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      waiter?.(reply);
    });
  }

  /** Starts the proxy with one listener per route, forwarding to 127.0.0.1:targetPort. Starts healed. */
  static async start(routes: { name: string; targetPort: number }[]): Promise<PartitionProxy> {
    if (!hooked) {
      hooked = true;
      process.on('exit', killAllProxies);
    }
    const child = fork(path.join(here, 'proxy-process.ts'), [JSON.stringify(routes)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    running.add(child);
    const exited = new Promise<void>((resolve) =>
      child.once('exit', () => {
        running.delete(child);
        resolve();
      }),
    );
    const ports = await new Promise<Record<string, number>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the proxy did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      child.on('message', (msg: ProxyReply) => {
        if (msg.type !== 'ready') return;
        clearTimeout(timer);
        resolve(msg.ports);
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`the proxy exited before it was ready (code ${child.exitCode})`));
      });
    });
    return new PartitionProxy(child, ports, exited);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resets every proxied connection and refuses new ones; resolves with the time it happened (epoch ms). */
  async partition(): Promise<number> {
    return (await this.request({ type: 'partition' }, 'partitioned')).at;
  }

  /** Lets connections through again and starts new books; resolves with the time it happened. */
  async heal(): Promise<Reply<'healed'>> {
    return this.request({ type: 'heal' }, 'healed');
  }

  /** The connections accepted since the last heal whose HTTP request line contains `pathContains`. */
  async stats(pathContains: string): Promise<Reply<'stats'>> {
    return this.request({ type: 'stats', pathContains }, 'stats');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      await this.exited;
    }
  }

  private request<T extends ProxyReply['type']>(req: DistributiveOmit<ProxyRequest, 'id'>, expect: T): Promise<Reply<T>> {
    const id = this.nextId++;
    return new Promise<Reply<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the proxy did not answer ${req.type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.type !== expect) reject(new Error(`proxy: expected ${expect}, got ${reply.type}`));
        else resolve(reply as Reply<T>);
      });
      this.child.send({ ...req, id } as ProxyRequest);
    });
  }
}
