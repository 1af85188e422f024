/**
 * Counts what a client puts on the wire: a WebSocket class (ws's in Node, the browser's in the
 * page) extended to count the frames it sends and receives. Isomorphic.
 *
 * Payload bytes are the messages as the client sees them; wire bytes add the WebSocket frame
 * header of each (2 bytes, +2 or +8 for long payloads, +4 for the mask of client frames; the
 * relay does not negotiate permessage-deflate). TCP/IP headers are not counted.
 */
import type { WebSocketConstructor, WebSocketLike } from '@capsync/client';

export interface WireCounts {
  /** WebSockets opened (1 plus reconnects). */
  sockets: number;
  /** The longest time between two frames received from the relay (a stall as the client sees it), ms. */
  longestSilenceMs: number;
  /** When the last frame arrived (performance.now()), for the silence. */
  lastReceivedAt: number;
  /** How sockets ended: "client <code> <reason>" when the client closed it, "relay <code> <reason>" otherwise. */
  closes: string[];
  sentFrames: number;
  sentBytes: number;
  sentWireBytes: number;
  receivedFrames: number;
  receivedBytes: number;
  receivedWireBytes: number;
}

export function emptyCounts(): WireCounts {
  return { sockets: 0, longestSilenceMs: 0, lastReceivedAt: Number.NaN, closes: [], sentFrames: 0, sentBytes: 0, sentWireBytes: 0, receivedFrames: 0, receivedBytes: 0, receivedWireBytes: 0 };
}

/**
 * A copy of the counts as they are now, to diff against later. Starts the window of
 * `longestSilenceMs` afresh (the silence before it does not count).
 */
export function snapshotCounts(c: WireCounts): WireCounts {
  c.longestSilenceMs = 0;
  c.lastReceivedAt = performance.now();
  return { ...c, closes: [...c.closes] };
}

export function diffCounts(to: WireCounts, from: WireCounts): WireCounts {
  return {
    sockets: to.sockets - from.sockets,
    // Not a difference: reset with resetSilence() where the window starts.
    longestSilenceMs: to.longestSilenceMs,
    lastReceivedAt: to.lastReceivedAt,
    closes: to.closes.slice(from.closes.length),
    sentFrames: to.sentFrames - from.sentFrames,
    sentBytes: to.sentBytes - from.sentBytes,
    sentWireBytes: to.sentWireBytes - from.sentWireBytes,
    receivedFrames: to.receivedFrames - from.receivedFrames,
    receivedBytes: to.receivedBytes - from.receivedBytes,
    receivedWireBytes: to.receivedWireBytes - from.receivedWireBytes,
  };
}

function frameHeader(payload: number, masked: boolean): number {
  return 2 + (payload < 126 ? 0 : payload < 65536 ? 2 : 8) + (masked ? 4 : 0);
}

function byteLength(data: unknown): number {
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  if (typeof data === 'string') return new TextEncoder().encode(data).byteLength;
  if (Array.isArray(data)) return data.reduce((n: number, part: unknown) => n + byteLength(part), 0); // ws 'fragments'
  return 0;
}

type CountableSocket = WebSocketLike & {
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
};

/** `Base` extended to add every frame it sends or receives to `counts`. */
export function countingWebSocket(Base: WebSocketConstructor, counts: WireCounts): WebSocketConstructor {
  const Countable = Base as unknown as new (url: string, protocols?: string | string[]) => CountableSocket;
  class CountingWebSocket extends Countable {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      counts.sockets++;
      this.addEventListener('close', (event) => {
        if (!this.closedByClient) counts.closes.push(`relay ${event.code} ${event.reason}`.trim());
      });
      this.addEventListener('message', (event) => {
        const now = performance.now();
        if (Number.isFinite(counts.lastReceivedAt)) counts.longestSilenceMs = Math.max(counts.longestSilenceMs, now - counts.lastReceivedAt);
        counts.lastReceivedAt = now;
        const n = byteLength(event.data);
        counts.receivedFrames++;
        counts.receivedBytes += n;
        counts.receivedWireBytes += n + frameHeader(n, false);
      });
    }

    private closedByClient = false;

    override close(code?: number, reason?: string): void {
      this.closedByClient = true;
      counts.closes.push(`client ${code ?? ''} ${reason ?? ''}`.trim());
      super.close(code, reason);
    }

    override send(data: Uint8Array): void {
      const n = data.byteLength;
      counts.sentFrames++;
      counts.sentBytes += n;
      counts.sentWireBytes += n + frameHeader(n, true);
      super.send(data);
    }
  }
  return CountingWebSocket;
}
