/**
 * A TCP fault proxy for chaos tests: 127.0.0.1, port 0, in front of a target port, switchable
 * at any time; tests see every connection attempt a client made (`connections`) and the first
 * bytes of each (`head`: a WebSocket upgrade request, path and token included). What a
 * connection experiences is its mode and its delay:
 *
 * Modes (existing connections and new ones alike):
 * - 'pass': bytes flow both ways.
 * - 'hold': nothing flows either way and nothing is closed (a black hole, a frozen NAT: TCP
 *   stays up). New connections are accepted, connected upstream and held too. Bytes read
 *   meanwhile are kept and delivered in order once their direction flows again, as TCP
 *   retransmission would after a partition heals.
 * - 'one-way-up' / 'one-way-down': bytes flow only client → target ('up') or only target →
 *   client ('down'); the other direction is held as in 'hold'. (A WebSocket handshake cannot
 *   complete, and an existing link goes deaf in one direction until a heartbeat notices.)
 * - 'reset': every connection is destroyed with a TCP RST, new ones as soon as accepted.
 * - 'drop': every connection is ended with a FIN, new ones at once.
 *
 * Delay (`setDelay`): each chunk is delivered `ms` plus up to `jitterMs` (seeded) after it was
 * read. Order within a connection and direction is kept (a stream cannot reorder), so a chunk
 * never overtakes the one before it; different connections get independent jitter, so
 * messages on different links (a client's and a peer relay's) are reordered against each
 * other. Ends and closes travel behind the data in the same queues.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';

export type FaultMode = 'pass' | 'hold' | 'one-way-up' | 'one-way-down' | 'reset' | 'drop';
export type Direction = 'up' | 'down';

export interface DelaySpec {
  ms: number;
  jitterMs: number;
}

export interface FaultConnection {
  /** 1-based, in order of acceptance. */
  id: number;
  acceptedAt: number;
  /** The first bytes the client sent (for a WebSocket: its HTTP upgrade request), latin1, at most 8 KiB. */
  head: string;
  /** True once both sides are gone. */
  closed: boolean;
  chunksUp: number;
  chunksDown: number;
  bytesUp: number;
  bytesDown: number;
}

/** A queued item of one direction: data, or the end/destruction of the side it came from. */
type Item = { kind: 'data'; chunk: Buffer; due: number } | { kind: 'end'; due: number } | { kind: 'destroy'; due: number };

interface Lane {
  /** Where items are written. */
  to: net.Socket;
  queue: Item[];
  timer: NodeJS.Timeout | null;
  /** Due time of the last queued item: the next one is never due earlier. */
  lastDue: number;
}

interface Pair {
  info: FaultConnection;
  client: net.Socket;
  upstream: net.Socket;
  up: Lane;
  down: Lane;
}

export interface FaultProxyEvents {
  connection: [FaultConnection];
  closed: [FaultConnection];
  /** The first bytes of a connection arrived (`head` is set). */
  head: [FaultConnection];
  /** A chunk was read from one side (it is queued: delivered now, later, or held); the chunk last. */
  read: [FaultConnection, Direction, Buffer];
  /** A chunk was delivered to the other side. */
  delivered: [FaultConnection, Direction];
}

export interface FaultProxyOptions {
  mode?: FaultMode;
  targetHost?: string;
  /** Jitter source; default Math.random. Pass a seeded one for reproducible delays. */
  random?: () => number;
  /** A name for logs. */
  name?: string;
}

export class FaultProxy extends EventEmitter<FaultProxyEvents> {
  readonly connections: FaultConnection[] = [];
  readonly name: string;
  private readonly pairs = new Set<Pair>();
  private modeValue: FaultMode;
  private delayValue: DelaySpec | null = null;
  private readonly random: () => number;
  private readonly targetHost: string;
  private closing = false;

  private constructor(
    private readonly server: net.Server,
    private targetPort: number,
    options: FaultProxyOptions,
  ) {
    super();
    this.modeValue = options.mode ?? 'pass';
    this.random = options.random ?? Math.random;
    this.targetHost = options.targetHost ?? '127.0.0.1';
    this.name = options.name ?? `proxy→${targetPort}`;
    server.on('connection', (socket) => this.accept(socket));
  }

  /** Listens on a free port; `targetPort` may be 0 until `setTarget` (connections then fail). */
  static async start(targetPort: number, options: FaultProxyOptions = {}): Promise<FaultProxy> {
    const server = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new FaultProxy(server, targetPort, options);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** `ws://127.0.0.1:<port>`: give it to a client (or a relay's `--peer`) as the relay URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get mode(): FaultMode {
    return this.modeValue;
  }

  get delay(): DelaySpec | null {
    return this.delayValue;
  }

  get accepted(): number {
    return this.connections.length;
  }

  /** Connections with a side still open. */
  get open(): number {
    return this.pairs.size;
  }

  /** New connections go to this port from now on (existing ones stay where they are). */
  setTarget(port: number): void {
    this.targetPort = port;
  }

  setMode(mode: FaultMode): void {
    this.modeValue = mode;
    for (const pair of [...this.pairs]) this.apply(pair);
  }

  /** Latency for chunks read from now on (null: none). Chunks already queued keep their time. */
  setDelay(delay: DelaySpec | null): void {
    this.delayValue = delay && (delay.ms > 0 || delay.jitterMs > 0) ? { ...delay } : null;
  }

  /** Back to 'pass' without delay. */
  heal(): void {
    this.setDelay(null);
    this.setMode('pass');
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const pair of [...this.pairs]) this.destroyPair(pair);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Whether bytes travelling in `dir` flow in the current mode. */
  flows(dir: Direction): boolean {
    switch (this.modeValue) {
      case 'pass':
        return true;
      case 'one-way-up':
        return dir === 'up';
      case 'one-way-down':
        return dir === 'down';
      default:
        return false;
    }
  }

  private accept(client: net.Socket): void {
    const info: FaultConnection = { id: this.connections.length + 1, acceptedAt: performance.now(), head: '', closed: false, chunksUp: 0, chunksDown: 0, bytesUp: 0, bytesDown: 0 };
    this.connections.push(info);
    client.on('error', () => {});
    if (this.closing || this.modeValue === 'reset') {
      client.resetAndDestroy();
      info.closed = true;
      this.emit('connection', info);
      this.emit('closed', info);
      return;
    }
    if (this.modeValue === 'drop') {
      client.end();
      client.resume();
      client.once('close', () => {
        info.closed = true;
        this.emit('closed', info);
      });
      this.emit('connection', info);
      return;
    }
    const upstream = net.connect({ port: this.targetPort, host: this.targetHost });
    upstream.on('error', () => {});
    const pair: Pair = {
      info,
      client,
      upstream,
      up: { to: upstream, queue: [], timer: null, lastDue: 0 },
      down: { to: client, queue: [], timer: null, lastDue: 0 },
    };
    this.pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', (chunk: Buffer) => {
      if (!info.head) {
        info.head = chunk.subarray(0, 8192).toString('latin1');
        this.emit('head', info);
      }
      info.chunksUp++;
      info.bytesUp += chunk.length;
      this.enqueue(pair, 'up', { kind: 'data', chunk, due: 0 });
      this.emit('read', info, 'up', chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      info.chunksDown++;
      info.bytesDown += chunk.length;
      this.enqueue(pair, 'down', { kind: 'data', chunk, due: 0 });
      this.emit('read', info, 'down', chunk);
    });
    // allowHalfOpen is off: a side that ended is closed by Node once it finished writing.
    client.on('end', () => this.enqueue(pair, 'up', { kind: 'end', due: 0 }));
    upstream.on('end', () => this.enqueue(pair, 'down', { kind: 'end', due: 0 }));
    // A side destroyed (RST, error, or closed after its end): the news travels to the other
    // side behind the data, and only when that direction flows (a partition hides it).
    client.on('close', () => this.sideClosed(pair, 'up'));
    upstream.on('close', () => this.sideClosed(pair, 'down'));
    this.emit('connection', info);
    client.resume();
  }

  private sideClosed(pair: Pair, dir: Direction): void {
    if (pair.client.destroyed && pair.upstream.destroyed) {
      this.forget(pair);
      return;
    }
    this.enqueue(pair, dir, { kind: 'destroy', due: 0 });
  }

  private forget(pair: Pair): void {
    for (const lane of [pair.up, pair.down]) {
      if (lane.timer) clearTimeout(lane.timer);
      lane.timer = null;
      lane.queue = [];
    }
    if (this.pairs.delete(pair)) {
      pair.info.closed = true;
      this.emit('closed', pair.info);
    }
  }

  private enqueue(pair: Pair, dir: Direction, item: Item): void {
    const lane = dir === 'up' ? pair.up : pair.down;
    const now = performance.now();
    const d = this.delayValue;
    const latency = d ? d.ms + this.random() * d.jitterMs : 0;
    item.due = Math.max(lane.lastDue, now + latency);
    lane.lastDue = item.due;
    lane.queue.push(item);
    this.pump(pair, dir);
  }

  /** Brings one connection in line with the current mode. */
  private apply(pair: Pair): void {
    switch (this.modeValue) {
      case 'reset':
        this.destroyPair(pair);
        return;
      case 'drop':
        for (const lane of [pair.up, pair.down]) {
          if (lane.timer) clearTimeout(lane.timer);
          lane.timer = null;
          lane.queue = [];
        }
        if (!pair.client.destroyed) pair.client.end();
        if (!pair.upstream.destroyed) pair.upstream.end();
        return;
      default:
        this.pump(pair, 'up');
        this.pump(pair, 'down');
    }
  }

  /** Delivers what is due in `dir` if that direction flows; arms a timer for the rest. */
  private pump(pair: Pair, dir: Direction): void {
    const lane = dir === 'up' ? pair.up : pair.down;
    if (lane.timer) {
      clearTimeout(lane.timer);
      lane.timer = null;
    }
    if (!this.pairs.has(pair) || !this.flows(dir)) return;
    const now = performance.now();
    while (lane.queue.length > 0) {
      const item = lane.queue[0]!;
      if (item.due > now) {
        lane.timer = setTimeout(() => {
          lane.timer = null;
          this.pump(pair, dir);
        }, Math.max(1, Math.ceil(item.due - now)));
        return;
      }
      lane.queue.shift();
      const to = lane.to;
      if (item.kind === 'data') {
        if (!to.destroyed && !to.writableEnded) {
          to.write(item.chunk);
          this.emit('delivered', pair.info, dir);
        }
      } else if (item.kind === 'end') {
        if (!to.destroyed && !to.writableEnded) to.end();
      } else {
        if (!to.destroyed) to.destroy();
      }
    }
  }

  private destroyPair(pair: Pair): void {
    for (const s of [pair.client, pair.upstream]) {
      if (s.destroyed) continue;
      // An RST, except on a socket whose FIN is on its way: resetting while a shutdown request
      // is pending leaves that request open forever, and Node then spins at exit waiting for it.
      if (typeof s.resetAndDestroy === 'function' && !s.connecting && !s.writableEnded) s.resetAndDestroy();
      else s.destroy();
    }
  }
}
