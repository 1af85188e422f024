import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CapsyncError } from '@capsync/core';
import type { RelayMetrics } from '../metrics.js';

type Limit = 'max-connections' | 'max-connections-per-address';

/**
 * How long a refused socket may stay open to be told why (a 503 or a 1013 close), from its
 * accept: an absolute deadline, not an idle timeout, which a client dribbling one byte at a time
 * would re-arm forever.
 */
export const REFUSED_SOCKET_DEADLINE_MS = 2_000;
/**
 * Refused sockets held open at once (all addresses) to be told why. Past it a refused socket is
 * destroyed at once, without a reply: a flood of connections over the caps costs the relay at
 * most this many file descriptors beyond the caps, each for at most the deadline above.
 */
export const MAX_REFUSED_SOCKETS = 128;

/** A socket's standing: counted against the caps, refused (and why), or exempt (a peer relay). */
type Standing =
  | { kind: 'counted'; address: string }
  | { kind: 'refused'; limit: Limit; deadline: NodeJS.Timeout; reported: boolean }
  | { kind: 'exempt' };

/**
 * Caps on open connections, in total and per client address (`--max-connections`,
 * `--max-connections-per-address`; 0 = no cap). Counted per TCP connection of the relay's port
 * from its accept, so WebSocket clients, lock clients and HTTP keep-alive connections all count.
 * A connection authorized with a relay credential (a peer relay's links: one per shared
 * document) is exempted once authorized (see `exempt`): a mesh's replication must not stop at
 * the per-address cap.
 *
 * A connection over a cap is not counted; it is marked refused and told why on its first
 * request: HTTP gets 503 too-many-connections, a WebSocket upgrade is completed and closed 1013
 * (browsers cannot read a failed handshake). It is destroyed at the latest
 * REFUSED_SOCKET_DEADLINE_MS after its accept, and at once while MAX_REFUSED_SOCKETS refused
 * sockets are already held. Each refused socket counts once in
 * `capsync_limit_refusals_total{limit}` (when told why or dropped; not if it turns out to be a
 * peer relay).
 */
export class ConnectionLimits {
  private total = 0;
  private refusedOpen = 0;
  private readonly byAddress = new Map<string, number>();
  private readonly standing = new WeakMap<Socket, Standing>();

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
      if (this.refusedOpen >= MAX_REFUSED_SOCKETS) {
        this.metrics.limitRefusals.inc({ limit });
        this.metrics.refusals.inc({ reason: 'too-many-connections' });
        socket.destroy();
        return;
      }
      this.refusedOpen++;
      const deadline = setTimeout(() => socket.destroy(), REFUSED_SOCKET_DEADLINE_MS);
      this.standing.set(socket, { kind: 'refused', limit, deadline, reported: false });
    } else {
      this.adjust(address, +1);
      this.standing.set(socket, { kind: 'counted', address });
    }
    socket.once('close', () => this.release(socket, true));
  }

  /** `admit`, unless the socket was admitted already (an app's server the relay is attached to). */
  admitOnce(socket: Socket): void {
    if (!this.standing.has(socket)) this.admit(socket);
  }

  /**
   * Takes `socket` out of the caps: it was authorized as a peer relay. Clears a refusal too (a
   * peer's link is served even when clients fill the caps).
   */
  exempt(socket: Socket): void {
    this.release(socket, false);
    if (!socket.destroyed) this.standing.set(socket, { kind: 'exempt' });
  }

  /**
   * The error to answer on `socket` if it was over a cap, else undefined. The caller tells the
   * client: this counts the refusal.
   */
  refuse(socket: Socket): CapsyncError | undefined {
    const s = this.standing.get(socket);
    if (s?.kind !== 'refused') return undefined;
    this.report(s);
    return new CapsyncError(
      'too-many-connections',
      s.limit === 'max-connections' ? 'the relay has too many connections; retry later' : 'too many connections from this address; retry later',
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
      const err = this.refuse(req.socket);
      if (!err) return handler(req, res);
      this.metrics.refusals.inc({ reason: err.code });
      res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': '1', Connection: 'close' });
      res.end(JSON.stringify({ error: { code: err.code, message: err.message } }));
    };
  }

  /** Ends what `socket` holds against the caps (idempotent); `closed`: it is gone, not exempted. */
  private release(socket: Socket, closed: boolean): void {
    const s = this.standing.get(socket);
    this.standing.delete(socket);
    if (s?.kind === 'counted') this.adjust(s.address, -1);
    else if (s?.kind === 'refused') {
      clearTimeout(s.deadline);
      this.refusedOpen--;
      if (closed) this.report(s); // dropped (deadline) or gone before it was told
    }
  }

  private report(s: Extract<Standing, { kind: 'refused' }>): void {
    if (s.reported) return;
    s.reported = true;
    this.metrics.limitRefusals.inc({ limit: s.limit });
  }

  private adjust(address: string, delta: 1 | -1): void {
    this.total += delta;
    const left = (this.byAddress.get(address) ?? 0) + delta;
    if (left > 0) this.byAddress.set(address, left);
    else this.byAddress.delete(address);
  }
}
