import type { FairSocket, FrameBatch } from '@capsync/core';
import type { RelaySocket } from '../relay/accounted-channel.js';

/**
 * A socket whose sends take turns between sessions (FairSocket) and leave batched (FrameBatch);
 * closing sends what was batched (it was sent before the close) and drops what still waits.
 */
export function fairSocket(socket: RelaySocket, fair: FairSocket, batch: FrameBatch): RelaySocket {
  return {
    send: (frame, cb) => fair.send(frame, cb),
    get bufferedAmount() {
      return fair.bufferedAmount;
    },
    close: (code, reason) => {
      batch.flush();
      fair.clear();
      socket.close(code, reason);
    },
    terminate: () => {
      batch.clear();
      fair.clear();
      socket.terminate();
    },
  };
}
