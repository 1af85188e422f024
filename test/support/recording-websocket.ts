import WsWebSocket from 'ws';

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
