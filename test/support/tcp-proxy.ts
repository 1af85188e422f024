import { EventEmitter } from 'node:events';
import net from 'node:net';
import WsWebSocket from 'ws';

/**
 * How the proxy treats connections, existing and new:
 * - 'pass': forwards bytes both ways.
 * - 'hold': forwards nothing either way and closes nothing (a half-open link, a frozen NAT or a
 *   partition: TCP stays up, no byte gets through). New connections are accepted and held too.
 *   Bytes read meanwhile are kept and delivered, in order, once the mode is 'pass' again, like
 *   TCP retransmitting after a partition heals.
 * - 'reset': destroys every connection with a TCP RST; new ones are reset as soon as they are
 *   accepted (like a relay that is down behind a load balancer).
 * - 'drop': ends every connection with a FIN, and new ones at once (a server that hangs up).
 */
export type ProxyMode = 'pass' | 'hold' | 'reset' | 'drop';

export interface ProxiedConnection {
  /** 1-based, in order of acceptance. */
  id: number;
  /** When it was accepted (performance.now()). */
  acceptedAt: number;
  /** The first bytes the client sent (for a WebSocket: its HTTP upgrade request), as latin1 text. */
  head: string;
  /** True once both sides are gone. */
  closed: boolean;
  /** Chunks read from the client and from the target so far (forwarded or held). */
  chunksUp: number;
  chunksDown: number;
}

interface Pair {
  info: ProxiedConnection;
  client: net.Socket;
  upstream: net.Socket;
  /** Bytes read while held, per direction, delivered on 'pass'. */
  toUpstream: Buffer[];
  toClient: Buffer[];
  /** A side ended (FIN) while held: forward the end on 'pass'. */
  clientEnded: boolean;
  upstreamEnded: boolean;
}

export interface TcpProxyEvents {
  /** A client connection was accepted (in any mode). */
  connection: [ProxiedConnection];
  /** Both sides of a connection are closed. */
  closed: [ProxiedConnection];
  /** The first bytes of a connection arrived (`head` is set). */
  head: [ProxiedConnection];
  /** A chunk arrived from either side. */
  data: [ProxiedConnection, 'up' | 'down'];
}

/**
 * A small TCP proxy on 127.0.0.1, port 0, in front of a target port, whose behaviour tests can
 * switch at any time (see `ProxyMode`). It counts accepted connections, so a test can see every
 * connection attempt a client made, and keeps the first bytes of each (a WebSocket upgrade
 * request: path and headers, token included).
 */
export class TcpProxy extends EventEmitter<TcpProxyEvents> {
  readonly connections: ProxiedConnection[] = [];
  private readonly pairs = new Set<Pair>();
  private modeValue: ProxyMode;

  private constructor(
    private readonly server: net.Server,
    private targetPort: number,
    mode: ProxyMode,
    private readonly targetHost: string,
  ) {
    super();
    this.modeValue = mode;
    server.on('connection', (socket) => this.accept(socket));
  }

  static async start(targetPort: number, mode: ProxyMode = 'pass', targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const server = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new TcpProxy(server, targetPort, mode, targetHost);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** `ws://127.0.0.1:<port>`: give this to a client as the relay URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get mode(): ProxyMode {
    return this.modeValue;
  }

  /** Connections accepted so far (every attempt a client made while the proxy listened). */
  get accepted(): number {
    return this.connections.length;
  }

  /** Connections with at least one side still open. */
  get open(): number {
    return this.pairs.size;
  }

  /** New connections go to this port from now on (existing ones stay where they are). */
  setTarget(port: number): void {
    this.targetPort = port;
  }

  setMode(mode: ProxyMode): void {
    this.modeValue = mode;
    for (const pair of [...this.pairs]) this.apply(pair);
  }

  async close(): Promise<void> {
    for (const pair of [...this.pairs]) this.destroy(pair, true);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    const info: ProxiedConnection = { id: this.connections.length + 1, acceptedAt: performance.now(), head: '', closed: false, chunksUp: 0, chunksDown: 0 };
    this.connections.push(info);
    client.on('error', () => {});
    if (this.modeValue === 'reset') {
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
    const pair: Pair = { info, client, upstream, toUpstream: [], toClient: [], clientEnded: false, upstreamEnded: false };
    this.pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    // allowHalfOpen is off: a side that ends is closed by Node once it also finished writing.
    client.on('data', (chunk: Buffer) => {
      if (!info.head) {
        info.head = chunk.subarray(0, 8192).toString('latin1');
        this.emit('head', info);
      }
      info.chunksUp++;
      if (this.modeValue === 'pass') upstream.write(chunk);
      else pair.toUpstream.push(chunk);
      this.emit('data', info, 'up');
    });
    upstream.on('data', (chunk: Buffer) => {
      info.chunksDown++;
      if (this.modeValue === 'pass') client.write(chunk);
      else pair.toClient.push(chunk);
      this.emit('data', info, 'down');
    });
    client.on('end', () => {
      pair.clientEnded = true;
      if (this.modeValue === 'pass') upstream.end();
    });
    upstream.on('end', () => {
      pair.upstreamEnded = true;
      if (this.modeValue === 'pass') client.end();
    });
    // A side that is destroyed (RST, error): tear down the other, unless held (a partition
    // would not carry that news either; 'pass' delivers it).
    client.on('close', () => this.sideClosed(pair));
    upstream.on('close', () => this.sideClosed(pair));
    this.emit('connection', info);
    this.apply(pair);
  }

  private sideClosed(pair: Pair): void {
    if (pair.client.destroyed && pair.upstream.destroyed) {
      if (this.pairs.delete(pair)) {
        pair.info.closed = true;
        this.emit('closed', pair.info);
      }
      return;
    }
    if (this.modeValue === 'pass') this.flush(pair);
  }

  /** Brings one connection in line with the current mode. */
  private apply(pair: Pair): void {
    switch (this.modeValue) {
      case 'pass':
        this.flush(pair);
        pair.client.resume();
        pair.upstream.resume();
        return;
      case 'hold':
        // Keep reading (the bytes are kept) so neither side sees back-pressure change anything.
        pair.client.resume();
        pair.upstream.resume();
        return;
      case 'reset':
        this.destroy(pair, true);
        return;
      case 'drop':
        pair.client.end();
        pair.upstream.end();
        return;
    }
  }

  /** Delivers what was held, then any end or close that happened meanwhile. */
  private flush(pair: Pair): void {
    const { client, upstream } = pair;
    for (const chunk of pair.toUpstream.splice(0)) if (!upstream.destroyed) upstream.write(chunk);
    for (const chunk of pair.toClient.splice(0)) if (!client.destroyed) client.write(chunk);
    if (pair.clientEnded && !upstream.destroyed) upstream.end();
    if (pair.upstreamEnded && !client.destroyed) client.end();
    if (client.destroyed && !upstream.destroyed) upstream.destroy();
    if (upstream.destroyed && !client.destroyed) client.destroy();
  }

  private destroy(pair: Pair, reset: boolean): void {
    for (const s of [pair.client, pair.upstream]) {
      if (s.destroyed) continue;
      if (reset && typeof s.resetAndDestroy === 'function' && !s.connecting) s.resetAndDestroy();
      else s.destroy();
    }
  }
}

/**
 * `ws`'s WebSocket, except that an 'error' event nobody listens to is recorded in `unheard`
 * instead of being thrown (Node's EventEmitter throws it, which would crash the test process
 * and hide what the test is about). Browsers' WebSockets never throw for unheard errors, so
 * this is the browser's behaviour; a test asserts on `unheard` where it matters.
 */
export function recordingWebSocket(): { WebSocket: typeof WsWebSocket; unheard: Error[] } {
  const unheard: Error[] = [];
  class RecordingWebSocket extends WsWebSocket {
    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event === 'error' && this.listenerCount('error') === 0) {
        unheard.push(args[0] as Error);
        return false;
      }
      return super.emit(event, ...args);
    }
  }
  return { WebSocket: RecordingWebSocket, unheard };
}
