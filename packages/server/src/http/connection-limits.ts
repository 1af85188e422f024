import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CapsyncError } from '@capsync/core';
import type { RelayMetrics } from '../metrics.js';

type Limit = 'max-connections' | 'max-connections-per-address';

/** How long a refused socket may stay open to be told why (a 503 or a 1013 close) before it is dropped. */
const REFUSED_SOCKET_TIMEOUT_MS = 10_000;

/**
 * Caps on open connections, in total and per client address (`--max-connections`,
 * `--max-connections-per-address`; 0 = no cap). Counted per TCP connection of the relay's port,
 * so WebSocket clients, peer relays, lock clients and HTTP keep-alive connections all count.
 *
 * A connection over a cap is not counted; it is marked refused and told why on its first
 * request: HTTP gets 503 too-many-connections, a WebSocket upgrade is completed and closed 1013
 * (browsers cannot read a failed handshake). Each refusal counts in
 * `capsync_limit_refusals_total{limit}`.
 */
export class ConnectionLimits {
  private total = 0;
  private readonly byAddress = new Map<string, number>();
  private readonly refused = new WeakMap<Socket, Limit>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerAddress: number,
    private readonly metrics: RelayMetrics,
  ) {}

  /** Counts a new connection until it closes, or marks it refused. Call on the server's 'connection'. */
  admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    const fromAddress = this.byAddress.get(address) ?? 0;
    const limit: Limit | undefined =
      this.maxTotal > 0 && this.total >= this.maxTotal
        ? 'max-connections'
        : this.maxPerAddress > 0 && fromAddress >= this.maxPerAddress
          ? 'max-connections-per-address'
          : undefined;
    if (limit) {
      this.refused.set(socket, limit);
      this.metrics.limitRefusals.inc({ limit });
      socket.setTimeout(REFUSED_SOCKET_TIMEOUT_MS, () => socket.destroy());
      return;
    }
    this.total++;
    this.byAddress.set(address, fromAddress + 1);
    socket.once('close', () => {
      this.total--;
      const left = (this.byAddress.get(address) ?? 1) - 1;
      if (left > 0) this.byAddress.set(address, left);
      else this.byAddress.delete(address);
    });
  }

  /** The error to answer on `socket` if it was over a cap, else undefined. */
  refusal(socket: Socket): CapsyncError | undefined {
    const limit = this.refused.get(socket);
    if (!limit) return undefined;
    return new CapsyncError(
      'too-many-connections',
      limit === 'max-connections' ? 'the relay has too many connections; retry later' : 'too many connections from this address; retry later',
    );
  }

  /** Open (counted) connections: in total, or from one address. */
  count(address?: string): number {
    return address === undefined ? this.total : (this.byAddress.get(address) ?? 0);
  }

  /**
   * Wraps the HTTP request handler: a request on a refused connection answers 503
   * too-many-connections and closes it, without reaching the app.
   */
  guard(handler: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      const err = this.refusal(req.socket);
      if (!err) return handler(req, res);
      this.metrics.refusals.inc({ reason: err.code });
      res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': '1', Connection: 'close' });
      res.end(JSON.stringify({ error: { code: err.code, message: err.message } }));
    };
  }
}
