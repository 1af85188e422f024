import { CapsyncError, ProtocolError } from '../errors.js';
import { ABNORMAL_CLOSURE, type Channel, type ChannelHandler } from './channel.js';
import { HeldEvents } from './held-events.js';

/**
 * What a WebSocketChannel needs of a socket: the browser's WebSocket and `ws`'s both fit.
 * `send`'s callback is used only when the channel is told the socket has write callbacks (`ws`).
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  binaryType: string;
  send(data: Uint8Array, cb?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'message', listener: (e: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (e: { code: number; reason: string }) => void): void;
  addEventListener(type: 'error', listener: (e: unknown) => void): void;
  addEventListener(type: 'open', listener: (e: unknown) => void): void;
  /** `ws` only: drop without a closing handshake. */
  terminate?(): void;
}

const OPEN = 1;

/**
 * A Channel over an open WebSocket (see Channel for the contract). Binary frames are messages;
 * a text frame is a `text-frame` error. With `writeCallbacks` (`ws` on Node), `onWritten` runs
 * from the socket's write callback; without (browsers), a send counts as written once it is
 * handed to the socket, whose own buffer `bufferedAmount` still reports.
 */
export class WebSocketChannel implements Channel {
  private readonly events = new HeldEvents();
  private closing = false;

  constructor(
    private readonly ws: WebSocketLike,
    private readonly options: { writeCallbacks: boolean } = { writeCallbacks: false },
  ) {
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('message', (e) => {
      const data = e.data;
      if (typeof data === 'string') this.events.error(new ProtocolError('text-frame', 'text frames are not part of the protocol'));
      else if (data instanceof ArrayBuffer) this.events.message(new Uint8Array(data));
      else if (data instanceof Uint8Array) this.events.message(data);
      else this.events.error(new ProtocolError('bad-message', 'unexpected frame payload'));
    });
    ws.addEventListener('close', (e) => this.events.close(e.code, e.reason));
    ws.addEventListener('error', (e) => {
      const code = (e as { error?: { code?: string } }).error?.code;
      // ws reports a frame over its maxPayload as an error, then closes 1009.
      if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.events.error(new CapsyncError('message-too-large', 'a frame was over the size limit'));
    });
  }

  send(bytes: Uint8Array, onWritten?: () => void): void {
    if (this.closing || this.ws.readyState !== OPEN) return;
    if (this.options.writeCallbacks && onWritten) this.ws.send(bytes, () => onWritten());
    else {
      this.ws.send(bytes);
      onWritten?.();
    }
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** False once a send would be dropped (closing, closed, or not yet open). */
  get writable(): boolean {
    return !this.closing && this.ws.readyState === OPEN;
  }

  close(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    try {
      this.ws.close(code, reason);
    } catch {
      // Browsers send only 1000 and 3000-4999 (a 1001 GoingAway throws InvalidAccessError);
      // `ws` refuses reserved codes. The reason still says why, under 1000.
      this.ws.close(1000, reason);
    }
  }

  terminate(): void {
    this.closing = true;
    if (this.ws.terminate) this.ws.terminate();
    else this.ws.close();
    // A browser socket closed by us may report 1005/1000: the contract says 1006 on both sides.
    this.events.close(ABNORMAL_CLOSURE, '');
  }

  attach(handler: ChannelHandler): void {
    this.events.attach(handler);
  }
}

/**
 * A Dialer's `connect` over a WebSocket that is still connecting: the channel at once, and
 * `opened` on the socket's 'open' event. A socket that fails to connect reports its close
 * (1006 in browsers) on the channel. The channel listens for 'error' from the start: `ws`
 * emits one when a connecting socket is closed, and would throw it with no listener.
 */
export function dialWebSocket(ws: WebSocketLike, opened: () => void, options?: { writeCallbacks: boolean }): WebSocketChannel {
  const channel = new WebSocketChannel(ws, options);
  ws.addEventListener('open', () => opened());
  return channel;
}
