import { WebSocket } from 'ws';
import type { ChannelHandler, DialTransport } from '@capsync/core';
import { AccountedChannel, type RelaySocket } from './accounted-channel.js';
import type { SendBufferOptions } from './send-buffer.js';

export interface OutboundTransportOptions {
  /** The socket's send-buffer bounds: a peer that stops reading is a slow consumer (4429), as on a served socket. */
  outbound: SendBufferOptions;
  /** Counts the bytes received (a peer link: capsync_peer_bytes_in_total). */
  bytesIn?: (n: number) => void;
  /** A transport error, for the debug log (the close that follows is what counts). */
  error(err: Error): void;
  /** The largest message accepted from the other side (`ws` closes with 1009 past it); default `ws`'s 100 MiB. */
  maxPayload?: number;
}

/**
 * Opens an outbound WebSocket of this relay (the options every one of them takes): frames as
 * Buffers, no per-message compression (capsync frames are mostly Yjs updates: deflate would
 * cost memory per socket and CPU per frame for little), and no handshake timeout of `ws`'s own:
 * the Dialer bounds the whole attempt (connect and hello) with its `handshakeTimeoutMs`.
 */
function openOutboundSocket(url: string, protocols: string[], maxPayload?: number): WebSocket {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false, ...(maxPayload !== undefined ? { maxPayload } : {}) });
  ws.binaryType = 'nodebuffer';
  return ws;
}

/**
 * A relay's outbound WebSocket (to a peer, or to the lock authority) as a Dialer transport
 * (core's DialTransport): a `ws` socket whose sends go through an AccountedChannel, so a
 * socket this relay dialled is accounted exactly as a socket it serves (SendBuffer: the
 * slow-consumer bound, write callbacks). The Dialer owns the attempt (credential, handshake
 * timeout, hello, liveness with `ws` pings, backoff); this is only the socket.
 */
export class OutboundTransport implements DialTransport {
  /** The accounting of this socket (a PeerMuxSocket's sessions share its SendBuffer). */
  readonly accounted: AccountedChannel;
  private readonly ws: WebSocket;
  private pong: (() => void) | null = null;

  constructor(url: string, protocols: string[], opened: () => void, options: OutboundTransportOptions) {
    const ws = openOutboundSocket(url, protocols, options.maxPayload);
    this.ws = ws;
    this.accounted = new AccountedChannel(ws as unknown as RelaySocket, options.outbound);
    ws.on('open', opened);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      options.bytesIn?.(data.byteLength);
      this.accounted.received(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), isBinary);
    });
    ws.on('pong', () => this.pong?.());
    ws.on('close', (code: number, reason: Buffer) => this.accounted.transportClosed(code, reason.toString()));
    // `ws` throws an 'error' nobody listens to; the close that follows ends the attempt.
    ws.on('error', (err) => options.error(err));
  }

  get writable(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  get bufferedAmount(): number {
    return this.accounted.bufferedAmount;
  }

  send(bytes: Uint8Array, onWritten?: () => void): void {
    if (this.writable) this.accounted.send(bytes, onWritten);
  }

  ping(pong: () => void): void {
    this.pong = pong;
    try {
      this.ws.ping();
    } catch {
      // Not open (closing): the liveness watch gives up on it at its deadline.
    }
  }

  close(code: number, reason: string): void {
    this.accounted.close(code, reason);
  }

  terminate(): void {
    this.accounted.terminate();
  }

  attach(handler: ChannelHandler): void {
    this.accounted.attach(handler);
  }
}
