import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { RelaySocket } from '../relay/accounted-channel.js';

/**
 * Bytes a corked socket holds at most: past them it is uncorked at once, mid-task. A multiplexed
 * socket's burst of answers (1,000 documents opened at once) runs for tens of milliseconds in one
 * turn of microtasks, and corked until its end the client got nothing before the last document
 * was answered, then everything; written as it fills, the client works on the first answers
 * while the relay makes the rest. 64 KiB: what one write moves on loopback at once.
 */
export const CORKED_BYTES = 64 * 1024;

/**
 * A WebSocket whose frames sent within one tick leave in one write to the operating system.
 * `ws` writes each frame as it is sent (one syscall each); a multiplexed socket answers one
 * client read with frames for many sessions (1,000 documents opened at once: thousands of
 * frames), and those writes were the largest cost of the relay's CPU profile. The underlying
 * TCP socket is corked at the first send of a tick and uncorked on the next tick, so they go
 * out together, in order, with no added wait beyond the end of the current task; or as soon as
 * it holds CORKED_BYTES.
 *
 * `ws` keeps its TCP socket in `_socket` (not public API, stable across ws 7 and 8); without it
 * (another WebSocket implementation) frames go one by one, as before.
 */
export function batchedSocket(ws: WebSocket): RelaySocket {
  const tcp = (ws as unknown as { _socket?: Socket | null })._socket ?? null;
  let corked = false;
  const flush = (): void => {
    if (!corked) return;
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
      if (corked && tcp!.writableLength >= CORKED_BYTES) flush();
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    close: (code, reason) => ws.close(code, reason),
    terminate: () => ws.terminate(),
  };
}
