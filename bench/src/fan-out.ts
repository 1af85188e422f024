/**
 * Fan-out load: N clients edit one document at an offered total rate; every update must
 * reach the other N - 1 clients. One level = warm-up, measurement window, a short tail at the
 * same load (so late measured updates still see steady-state load), then a bounded drain.
 * Only updates sent inside the measurement window count.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { LoadClient, connectMany, nowMicros, type DeliverySink } from './load-client.js';
import { othersCpuMicros, sampleOthersCpu, type OthersCpu } from './machine.js';
import { pace } from './pacer.js';
import type { ServerKind, ServerProcess } from './server-process.js';
import { LatencySamples } from './stats.js';

export interface FanOutConfig {
  clients: number;
  /** Offered load, updates per second over all clients. */
  rate: number;
  warmupMs: number;
  measureMs: number;
  /** Load kept on after the window, before sending stops. */
  tailMs: number;
  /** Longest wait for the window's updates after sending stopped. */
  drainMs: number;
}

export interface LevelResult {
  server: ServerKind;
  offered: number;
  /** Updates actually sent per second in the window (below `offered` if the generator lagged). */
  sentPerSec: number;
  /** Deliveries / (clients - 1) / window seconds. */
  deliveredPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Deliveries received / (window sends x (clients - 1)), in percent. */
  deliveredPct: number;
  /** Updates per update message received: above 1 when the server merges updates. */
  updatesPerFrame: number;
  /** CPU time in the window as percent of one core. */
  serverCpuPct: number;
  clientCpuPct: number;
  /**
   * CPU of everything else on the machine in the window, percent of one core: other people's
   * work sharing the machine, which distorts the level (NaN when unknown).
   */
  otherCpuPct: number;
  /** p99 event-loop delay of the load generator in the window: its own lag adds to latency. */
  generatorLagP99Ms: number;
  /** Connections the server closed during the level. */
  closedByServer: number;
}

interface CpuSample {
  /** CPU microseconds of the server (with its own clock) and of the generator process. */
  server: { cpuMicros: number; atMicros: number } | null;
  client: number;
  others: OthersCpu | null;
  wall: number;
}

/** Collects what the clients receive during one level. */
class LevelRecorder implements DeliverySink {
  readonly latencies = new LatencySamples();
  windowStart = Number.POSITIVE_INFINITY;
  windowEnd = Number.POSITIVE_INFINITY;
  sends = 0;
  deliveries = 0;
  frames = 0;
  markers = 0;
  closedByServer = 0;
  private expected = Number.POSITIVE_INFINITY;
  private onComplete: (() => void) | null = null;

  inWindow(micros: number): boolean {
    return micros >= this.windowStart && micros < this.windowEnd;
  }

  sent(sendMicros: number): void {
    if (this.inWindow(sendMicros)) this.sends++;
  }

  delivered(_receiver: number, _sender: number, sendMicros: number, now: number): void {
    if (!this.inWindow(sendMicros)) return;
    this.latencies.add(now - sendMicros);
    if (++this.deliveries >= this.expected) this.onComplete?.();
  }

  frame(_receiver: number, markers: number, now: number): void {
    if (!this.inWindow(now)) return;
    this.frames++;
    this.markers += markers;
  }

  closed(): void {
    this.closedByServer++;
  }

  /** Resolves when `expected` deliveries arrived or after `timeoutMs`, whichever is first. */
  whenDelivered(expected: number, timeoutMs: number): Promise<void> {
    this.expected = expected;
    if (this.deliveries >= expected) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.onComplete = done;
    });
  }
}

/** Runs one offered-load level against a running server, on document `docName`. */
export async function runFanOutLevel(server: ServerProcess, docName: string, cfg: FanOutConfig): Promise<LevelResult> {
  const recorder = new LevelRecorder();
  const sockets = await connectMany(() => server.docUrl(docName), cfg.clients, cfg.clients);
  const clients = sockets.map((ws, i) => new LoadClient(i, ws, recorder));
  try {
    const start = nowMicros();
    recorder.windowStart = start + cfg.warmupMs * 1000;
    recorder.windowEnd = recorder.windowStart + cfg.measureMs * 1000;

    // CPU of both processes and of everything else over the window, sampled when it opens and closes;
    // the generator's event-loop delay over the window.
    const lag = monitorEventLoopDelay({ resolution: 1 });
    // An overloaded server may not answer in time: its CPU is then unknown (NaN).
    const cpuAt = (ms: number, then: () => void): Promise<CpuSample> =>
      new Promise((resolve) =>
        setTimeout(() => {
          then();
          const client = process.cpuUsage();
          const others = sampleOthersCpu();
          const wall = nowMicros();
          server.cpu().then(
            (s) => resolve({ server: s, client: client.user + client.system, others, wall }),
            () => resolve({ server: null, client: client.user + client.system, others, wall }),
          );
        }, ms),
      );
    const cpuStart = cpuAt(cfg.warmupMs, () => lag.enable());
    const cpuEnd = cpuAt(cfg.warmupMs + cfg.measureMs, () => lag.disable());

    await pace(cfg.rate, cfg.warmupMs + cfg.measureMs + cfg.tailMs, (n) => {
      const sentAt = clients[n % clients.length]!.send();
      if (sentAt >= 0) recorder.sent(sentAt);
    });
    const receivers = cfg.clients - 1;
    await recorder.whenDelivered(recorder.sends * receivers, cfg.drainMs);

    const [c0, c1] = await Promise.all([cpuStart, cpuEnd]);
    const wall = c1.wall - c0.wall;
    const serverCpu = c0.server && c1.server ? c1.server.cpuMicros - c0.server.cpuMicros : Number.NaN;
    const clientCpu = c1.client - c0.client;
    const seconds = cfg.measureMs / 1000;
    return {
      server: server.kind,
      offered: cfg.rate,
      sentPerSec: recorder.sends / seconds,
      deliveredPerSec: recorder.deliveries / receivers / seconds,
      p50Ms: recorder.latencies.percentileMs(50),
      p99Ms: recorder.latencies.percentileMs(99),
      deliveredPct: recorder.sends === 0 ? 0 : (100 * recorder.deliveries) / (recorder.sends * receivers),
      updatesPerFrame: recorder.frames === 0 ? 0 : recorder.markers / recorder.frames,
      serverCpuPct: c0.server && c1.server ? (100 * serverCpu) / (c1.server.atMicros - c0.server.atMicros) : Number.NaN,
      clientCpuPct: (100 * clientCpu) / wall,
      otherCpuPct: (100 * othersCpuMicros(c0.others, c1.others)) / wall,
      generatorLagP99Ms: lag.percentile(99) / 1e6,
      closedByServer: recorder.closedByServer,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
