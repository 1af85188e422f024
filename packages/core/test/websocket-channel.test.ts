import { describe, expect, it } from 'vitest';
import { dialWebSocket, type WebSocketLike } from '../src/index.js';

/**
 * WebSocketChannel details a browser shows and `ws` does not (the conformance suite runs over
 * `ws` in packages/server). The socket here follows the browser's rules for `close`.
 */
class BrowserLikeSocket implements WebSocketLike {
  readyState = 0;
  bufferedAmount = 0;
  binaryType = 'blob';
  readonly closes: [number | undefined, string | undefined][] = [];

  private readonly listeners = new Map<string, ((e: never) => void)[]>();

  addEventListener(type: string, listener: (e: never) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  send(): void {}

  close(code?: number, reason?: string): void {
    // What Chromium does (WebSocket.close, HTML spec step 1).
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
      throw new DOMException(`The close code must be either 1000, or between 3000 and 4999. ${code} is neither.`, 'InvalidAccessError');
    }
    this.readyState = 2;
    this.closes.push([code, reason]);
  }

  open(): void {
    this.readyState = 1;
    for (const listener of this.listeners.get('open') ?? []) listener({} as never);
  }
}

describe('WebSocketChannel in a browser', () => {
  it('regression: closing with 1001 (refused by browsers) closes with 1000 and the same reason instead of throwing', () => {
    const ws = new BrowserLikeSocket();
    let opened = 0;
    const channel = dialWebSocket(ws, () => opened++);
    expect(channel.writable).toBe(false);
    ws.open();
    expect([opened, channel.writable]).toEqual([1, true]);
    // RelayLink called ws.close(1001) in a try/catch: in browsers it threw, and the dead socket was never closed.
    channel.close(1001, 'unavailable: no answer within the heartbeat timeout');
    expect(ws.closes).toEqual([[1000, 'unavailable: no answer within the heartbeat timeout']]);
    expect(channel.writable).toBe(false);
  });
});
