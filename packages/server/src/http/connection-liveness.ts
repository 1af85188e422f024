import type { WebSocket } from 'ws';
import { CapsyncError } from '@capsync/core';
import type { SendBuffer } from '../relay/send-buffer.js';

/** What liveness needs of a served connection (document, lock or mesh). */
export interface WatchedConnection {
  /** Closes the connection with the error's close code. */
  fail(err: CapsyncError): void;
  readonly outbound: SendBuffer;
}

/**
 * Watches a served WebSocket for silence and for pongs it owes.
 *
 * Silence (`timeoutMs` > 0): once the peer has sent nothing, no frame and no pong, for half of
 * `timeoutMs`, the relay pings it; a connection still silent after `timeoutMs` is closed with
 * 4408 connection-timeout (and dropped a second later if the close handshake does not finish:
 * a silent peer may be gone). Browsers and `ws` answer pings by themselves, so an idle but
 * healthy client is never closed; one that stopped reading is. The check costs one timestamp
 * per received frame and one timer per connection, rescheduled at most twice per `timeoutMs`.
 *
 * Pongs: `ws` answers pings by itself, outside the connection's sends; they are accounted for
 * after every ping, so a ping flood from a peer that does not read is closed as a slow consumer
 * like any other.
 */
export function watchLiveness(ws: WebSocket, conn: WatchedConnection, timeoutMs: number): void {
  // ws has queued its pong before it emits 'ping'.
  ws.on('ping', () => conn.outbound.check());
  if (timeoutMs <= 0) return;
  let heard = performance.now();
  const hear = (): void => {
    heard = performance.now();
  };
  ws.on('message', hear);
  ws.on('ping', hear);
  ws.on('pong', hear);
  const tick = (): void => {
    const silent = performance.now() - heard;
    if (silent >= timeoutMs) {
      timer = null;
      conn.fail(new CapsyncError('connection-timeout', `nothing received for ${timeoutMs} ms`));
      setTimeout(() => ws.terminate(), 1000).unref();
      return;
    }
    if (silent >= timeoutMs / 2) {
      ws.ping();
      conn.outbound.check();
      timer = setTimeout(tick, timeoutMs - silent);
    } else {
      timer = setTimeout(tick, timeoutMs / 2 - silent);
    }
    timer.unref();
  };
  let timer: NodeJS.Timeout | null = setTimeout(tick, timeoutMs / 2);
  timer.unref();
  ws.on('close', () => {
    if (timer) clearTimeout(timer);
    timer = null;
  });
}
