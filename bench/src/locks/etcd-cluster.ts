/**
 * The etcd cluster of the lock benchmark: the integration tests' starter
 * (test/support/etcd-cluster.ts), so the benchmark runs on the very setup the etcd backend is
 * tested on: 3 members of the system's etcd on 127.0.0.1, each with its own temporary data
 * directory, heartbeat 50 ms, election timeout 500 ms. A watchdog process kills the members
 * if the bench dies without closing the cluster.
 */
import { findEtcd, startEtcdCluster, type EtcdCluster } from '../../../test/support/etcd-cluster.js';
import { readProcessCpuMicros } from './cpu.js';

export { findEtcd };

export interface BenchEtcd {
  endpoints: string[];
  version: string;
  /** CPU time of all members so far, microseconds. */
  cpuMicros(): number;
  close(): Promise<void>;
}

export async function startBenchEtcd(etcdPath: string, size = 3): Promise<BenchEtcd> {
  const cluster: EtcdCluster = await startEtcdCluster({ etcdPath, size });
  const version = await fetch(`${cluster.endpoints[0]}/version`, { signal: AbortSignal.timeout(2_000) })
    .then((r) => r.json() as Promise<{ etcdserver?: string }>)
    .then((v) => v.etcdserver ?? '?')
    .catch(() => '?');
  return {
    endpoints: cluster.endpoints,
    version,
    cpuMicros: () => cluster.members.reduce((sum, m) => sum + (m.pid === undefined ? Number.NaN : readProcessCpuMicros(m.pid)), 0),
    close: async () => {
      // The members are unref'd child processes: keep this process alive until they are gone.
      const keepAlive = setInterval(() => {}, 1_000);
      try {
        await cluster.close();
      } finally {
        clearInterval(keepAlive);
      }
    },
  };
}
