import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { RelaySocket } from '../relay/accounted-channel.js';

/**
 * A WebSocket whose frames sent within one tick leave in one write to the operating system.
 * `ws` writes each frame as it is sent (one syscall each); a multiplexed socket answers one
 * client read with frames for many sessions (1,000 documents opened at once: thousands of
 * frames), and those writes were the largest cost of the relay's CPU profile. The underlying
 * TCP socket is corked at the first send of a tick and uncorked on the next tick, so they go
 * out together, in order, with no added wait beyond the end of the current task.
 *
 * `ws` keeps its TCP socket in `_socket` (not public API, stable across ws 7 and 8); without it
 * (another WebSocket implementation) frames go one by one, as before.
 */
export function batchedSocket(ws: WebSocket): RelaySocket {
  const tcp = (ws as unknown as { _socket?: Socket | null })._socket ?? null;
  let corked = false;
  const flush = (): void => {
    corked = false;
    tcp?.uncork();
  };
  return {
    send(data, cb) {
      if (tcp && !corked && !tcp.destroyed) {
        corked = true;
        tcp.cork();
        process.nextTick(flush);
      }
      ws.send(data, cb);
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    close: (code, reason) => ws.close(code, reason),
    terminate: () => ws.terminate(),
  };
}
