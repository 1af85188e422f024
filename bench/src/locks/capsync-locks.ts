/**
 * The capsync side: a relay process (embedded backend, or `--etcd`) and one capsync client in
 * the bench process using its lock API, `client.locks.acquire(key, { ttlMs })` then
 * `lease.release()`, over the client's single lock WebSocket.
 */
import { createClient, type CapsyncClient, type WebSocketConstructor } from '@capsync/client';
import WebSocket from 'ws';
import { RelayProcess } from './relay-process.js';
import type { LockSystem, Release, SystemId } from './systems.js';

export class CapsyncLocks implements LockSystem {
  private constructor(
    readonly id: SystemId,
    readonly relay: RelayProcess,
    private readonly client: CapsyncClient,
    private readonly ttlMs: number,
  ) {}

  static async start(id: 'embedded' | 'etcd', ttlMs: number, etcdEndpoints: string[] | undefined, nodeArgs: string[]): Promise<CapsyncLocks> {
    const relay = await RelayProcess.start({ nodeArgs, ...(id === 'etcd' ? { etcd: etcdEndpoints! } : {}) });
    try {
      const client = createClient({ url: relay.url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor });
      return new CapsyncLocks(id, relay, client, ttlMs);
    } catch (err) {
      await relay.stop();
      throw err;
    }
  }

  async acquire(key: string): Promise<Release> {
    const lease = await this.client.locks.acquire(key, { ttlMs: this.ttlMs });
    return () => lease.release();
  }

  relayCpuMicros(): number {
    return this.relay.cpuMicros();
  }

  async close(): Promise<void> {
    try {
      await this.client.close();
    } finally {
      await this.relay.stop();
    }
  }
}
