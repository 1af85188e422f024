/**
 * The two workloads of the cluster benchmark, run against one started system.
 *
 * A: one document, `clients` clients split evenly over the two instances; the writers are
 *    clients of instance 0 (round robin, by default all of them); latency is measured at the
 *    clients of instance 1 (cross-instance) and at the other clients of the writers' instance.
 *    A fresh document per level.
 * B: `docs` documents with 4 clients each, two per instance; every update goes to one document
 *    (round robin over the documents) from one of its clients (rotating over the four), so
 *    each update has two cross-instance receivers and one on its own instance. The clients stay
 *    connected over the levels.
 */
import { ClusterClient, connectClient, connectClients } from './client.js';
import { runLevel, type LevelConfig, type LevelResult } from './level.js';
import type { RunningSystem } from './systems.js';

const CONNECT_CONCURRENCY = 50;
let nextClientId = 1;
let nextDoc = 0;

async function connect(system: RunningSystem, doc: string, instance: number): Promise<ClusterClient> {
  const server = system.serverFor(instance);
  const ws = await connectClient(system.dialect, server.port, doc);
  return new ClusterClient(nextClientId++, instance, doc, system.dialect, ws);
}

export interface WorkloadA {
  clients: number;
  writers: number;
  levels: LevelConfig[];
  /** Before each level (e.g. wait for a quiet machine). */
  beforeLevel: () => Promise<void>;
  onLevel: (l: LevelResult) => void;
}

/**
 * A level run first on a freshly started system and not reported: the first level of a cold
 * cluster relay (JIT, pool connections opened on demand, first LISTEN) measured 10x the latency
 * of the next ones.
 */
function warmUpLevel(levels: LevelConfig[]): LevelConfig {
  return { rate: levels[0]!.rate, warmupMs: 0, measureMs: 3_000, tailMs: 0, drainMs: 3_000, lateMs: 0 };
}

export async function runWorkloadA(system: RunningSystem, w: WorkloadA): Promise<LevelResult[]> {
  const results: LevelResult[] = [];
  for (const [i, level] of [warmUpLevel(w.levels), ...w.levels].entries()) {
    const doc = `cluster-a-${process.pid}-${++nextDoc}`;
    const clients = await connectClients(w.clients, CONNECT_CONCURRENCY, (i) => connect(system, doc, i % 2));
    try {
      const writers = clients.filter((c) => c.instance === 0).slice(0, w.writers);
      await w.beforeLevel();
      const result = await runLevel(system, clients, (n) => writers[n % writers.length]!, level, [doc]);
      if (i === 0) continue; // the warm-up
      w.onLevel(result);
      results.push(result);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  }
  return results;
}

export interface WorkloadB {
  docs: number;
  levels: LevelConfig[];
  beforeLevel: () => Promise<void>;
  onLevel: (l: LevelResult) => void;
  log: (line: string) => void;
}

export const CLIENTS_PER_DOC_B = 4;
/** Documents of workload B whose stored state is checked after each level. */
const STORED_CHECK_DOCS = 50;

export async function runWorkloadB(system: RunningSystem, w: WorkloadB): Promise<{ levels: LevelResult[]; connectSeconds: number }> {
  const prefix = `cluster-b-${process.pid}-${++nextDoc}`;
  const started = performance.now();
  // Client i: document i / 4, instance i % 2, so each document has two clients on each instance.
  const clients = await connectClients(w.docs * CLIENTS_PER_DOC_B, CONNECT_CONCURRENCY, (i) =>
    connect(system, `${prefix}-${Math.floor(i / CLIENTS_PER_DOC_B)}`, i % 2),
  );
  const connectSeconds = (performance.now() - started) / 1000;
  w.log(`  ${clients.length} clients on ${w.docs} documents connected in ${connectSeconds.toFixed(1)} s`);
  try {
    const levels: LevelResult[] = [];
    for (const [i, level] of [warmUpLevel(w.levels), ...w.levels].entries()) {
      await w.beforeLevel();
      // The n-th update: document n mod docs, its clients in turn (0, 1, 2, 3: instances 0, 1, 0, 1).
      const sender = (n: number): ClusterClient => {
        const doc = n % w.docs;
        const turn = Math.floor(n / w.docs) % CLIENTS_PER_DOC_B;
        return clients[doc * CLIENTS_PER_DOC_B + turn]!;
      };
      // The state of a sample of the documents is compared across the instances after each level.
      const checked = Array.from({ length: Math.min(STORED_CHECK_DOCS, w.docs) }, (_, i) => `${prefix}-${Math.floor((i * w.docs) / Math.min(STORED_CHECK_DOCS, w.docs))}`);
      const result = await runLevel(system, clients, sender, level, checked);
      if (i === 0) continue; // the warm-up
      w.onLevel(result);
      levels.push(result);
    }
    return { levels, connectSeconds };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
