import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import { Backoff, checkProtocolVersion, decodeMessage, encodeMessage, isCapsyncError, relayIdOf } from '@capsync/core';
import { redactUrl } from '../auth/url-token.js';
import type { Logger } from '../logger.js';
import { MESH_PATH } from './mesh-connection.js';
import { openPeerSocket, relayHello } from './peer-socket.js';

export interface PeerEndpointOptions {
  /** This relay's id. */
  relayId: string;
  /** The relay credential, fetched before every connect. */
  credential: () => Promise<string | undefined>;
  logger: Logger;
  /** A ping goes out this often; no pong within the same time marks the peer down. */
  heartbeatMs: number;
  backoff: { baseMs: number; maxMs: number };
}

export interface PeerEndpointEvents {
  /** The control link is up and the peer said who it is. */
  up: [];
  /** The control link is gone (closed, refused, or silent past the heartbeat). */
  down: [reason: string];
  /** The peer refused the link with a capsync close code (a bad relay credential: 4401/4403). */
  refused: [code: number, reason: string];
}

/**
 * One peer relay as this relay sees it: a control link to the peer's mesh endpoint that says
 * whether the peer is reachable (partition events) and who it is (its relay id), kept alive
 * with WebSocket pings and reopened with backoff. Document links to the peer follow it: they
 * connect when it is up and are dropped when it goes down, so a partition is noticed once
 * per peer, not once per document.
 */
export class PeerEndpoint extends EventEmitter<PeerEndpointEvents> {
  /** The peer's relay id, once it told us. */
  id: string | undefined;
  private socket: WebSocket | null = null;
  private upValue = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private awaitingPong = false;
  private readonly backoff: Backoff;
  /** `url` as logs show it (a token or password in it redacted). */
  readonly logUrl: string;

  constructor(
    readonly url: string,
    private readonly options: PeerEndpointOptions,
  ) {
    super();
    this.backoff = new Backoff(options.backoff);
    this.logUrl = redactUrl(url);
  }

  get up(): boolean {
    return this.upValue;
  }

  /** The relay credential for a new link to this peer. */
  credential(): Promise<string | undefined> {
    return this.options.credential();
  }

  start(): void {
    void this.connect();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.drop('relay shutting down');
  }

  private async connect(): Promise<void> {
    if (this.closed || this.socket) return;
    let token: string | undefined;
    try {
      token = await this.options.credential();
    } catch (err) {
      this.options.logger.error({ err, peer: this.logUrl }, 'minting the relay credential failed');
      this.retryLater();
      return;
    }
    if (this.closed || this.socket) return;
    const ws = openPeerSocket(this.url, MESH_PATH, this.options.relayId, token, this.options.heartbeatMs * 2);
    this.socket = ws;
    ws.on('open', () => {
      ws.send(encodeMessage(relayHello(this.options.relayId)));
      this.armHeartbeat(ws);
    });
    ws.on('message', (data: Buffer) => {
      this.awaitingPong = false;
      let id: string | undefined;
      try {
        const msg = decodeMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        if (msg.type !== 'hello') return;
        checkProtocolVersion(msg.protocolVersion);
        id = relayIdOf(msg);
      } catch (err) {
        if (isCapsyncError(err, 'protocol-version')) {
          // Retrying soon cannot help: one of the two relays must be upgraded first.
          this.options.logger.error({ peer: this.logUrl, err: err.message }, 'peer relay speaks an incompatible protocol version');
          this.backoff.saturate();
        }
        ws.terminate();
        return;
      }
      if (!id) return;
      if (this.id !== undefined && this.id !== id) this.options.logger.warn({ peer: this.logUrl, was: this.id, now: id }, 'peer relay changed its id');
      this.id = id;
      this.backoff.reset();
      this.setUp(true, '');
    });
    ws.on('pong', () => {
      this.awaitingPong = false;
    });
    ws.on('unexpected-response', (_req, res) => {
      this.options.logger.warn({ peer: this.logUrl, status: res.statusCode }, 'peer refused the mesh link');
      ws.terminate();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.socket !== ws) return;
      this.socket = null;
      this.clearHeartbeat();
      if (code >= 4000) {
        this.options.logger.warn({ peer: this.logUrl, code, reason: reason.toString() }, 'peer refused the mesh link');
        this.emit('refused', code, reason.toString());
      }
      this.setUp(false, `closed ${code} ${reason.toString()}`.trim());
      this.retryLater();
    });
    ws.on('error', (err) => {
      this.options.logger.debug({ peer: this.logUrl, err: err.message }, 'mesh link error');
    });
  }

  private armHeartbeat(ws: WebSocket): void {
    this.clearHeartbeat();
    this.pingTimer = setInterval(() => {
      if (this.awaitingPong) {
        // Silent for a whole interval: a partition (or a frozen peer). Drop it and retry.
        this.options.logger.info({ peer: this.logUrl }, 'peer did not answer the heartbeat');
        ws.terminate();
        return;
      }
      this.awaitingPong = true;
      try {
        ws.ping();
      } catch {
        ws.terminate();
      }
    }, this.options.heartbeatMs);
    this.pingTimer.unref();
  }

  private clearHeartbeat(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.awaitingPong = false;
  }

  private retryLater(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, this.backoff.next());
    this.retryTimer.unref();
  }

  private drop(reason: string): void {
    const ws = this.socket;
    this.socket = null;
    this.clearHeartbeat();
    if (ws) ws.terminate();
    this.setUp(false, reason);
  }

  private setUp(up: boolean, reason: string): void {
    if (this.upValue === up) return;
    this.upValue = up;
    if (up) this.emit('up');
    else this.emit('down', reason);
  }
}
