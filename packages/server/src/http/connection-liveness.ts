import type { WebSocket } from 'ws';
import { CapsyncError } from '@capsync/core';
import type { SendBuffer } from '../relay/send-buffer.js';

/** What liveness needs of a served connection (document, lock or mesh). */
export interface WatchedConnection {
  /** Closes the connection with the error's close code. */
  fail(err: CapsyncError): void;
  readonly outbound: SendBuffer;
}

interface Watched {
  conn: WatchedConnection;
  /** When the peer last sent anything: a frame, a ping or a pong (performance.now()). */
  heard: number;
}

/**
 * Watches a served WebSocket for silence and for pongs it owes.
 *
 * Silence (`timeoutMs` > 0): once the peer has sent nothing, no frame and no pong, for half of
 * `timeoutMs`, the relay pings it; a connection still silent after `timeoutMs` is closed with
 * 4408 connection-timeout (within a quarter of `timeoutMs` more), and dropped a second later if
 * the close handshake does not finish: a silent peer may be gone. Browsers and `ws` answer
 * pings by themselves, so an idle but healthy client is never closed; one that stopped reading
 * is.
 *
 * Pongs: `ws` answers pings by itself, outside the connection's sends; they are accounted for
 * after every ping, so a ping flood from a peer that does not read is closed as a slow consumer
 * like any other.
 *
 * Cost: idle connections are most of a relay's connections, so nothing here is per connection
 * but one small record: the listeners are shared functions (they find the record through the
 * socket they are called on), and one sweep timer per timeout value serves every connection.
 */
export function watchLiveness(ws: WebSocket, conn: WatchedConnection, timeoutMs: number): void {
  watched.set(ws, { conn, heard: performance.now() });
  ws.on('ping', onPing);
  ws.on('close', onClose);
  if (timeoutMs <= 0) return;
  ws.on('message', hear);
  ws.on('pong', hear);
  sweeperFor(timeoutMs).sockets.add(ws);
}

const watched = new WeakMap<WebSocket, Watched>();

function hear(this: WebSocket): void {
  const w = watched.get(this);
  if (w) w.heard = performance.now();
}

function onPing(this: WebSocket): void {
  const w = watched.get(this);
  if (!w) return;
  w.heard = performance.now();
  // ws has queued its pong before it emits 'ping'.
  w.conn.outbound.check();
}

function onClose(this: WebSocket): void {
  watched.delete(this);
  for (const sweeper of sweepers.values()) sweeper.sockets.delete(this);
}

/** One timer per timeout value, checking every watched socket four times per timeout. */
interface Sweeper {
  sockets: Set<WebSocket>;
  timer: NodeJS.Timeout | null;
}

const sweepers = new Map<number, Sweeper>();

function sweeperFor(timeoutMs: number): Sweeper {
  let sweeper = sweepers.get(timeoutMs);
  if (!sweeper) sweepers.set(timeoutMs, (sweeper = { sockets: new Set(), timer: null }));
  if (!sweeper.timer) {
    const s = sweeper;
    s.timer = setInterval(() => sweep(s, timeoutMs), Math.max(1, timeoutMs / 4));
    s.timer.unref();
  }
  return sweeper;
}

function sweep(sweeper: Sweeper, timeoutMs: number): void {
  const now = performance.now();
  for (const ws of sweeper.sockets) {
    const w = watched.get(ws);
    if (!w) {
      sweeper.sockets.delete(ws);
      continue;
    }
    const silent = now - w.heard;
    if (silent >= timeoutMs) {
      sweeper.sockets.delete(ws);
      w.conn.fail(new CapsyncError('connection-timeout', `nothing received for ${timeoutMs} ms`));
      setTimeout(() => ws.terminate(), 1000).unref();
    } else if (silent >= timeoutMs / 2) {
      ws.ping();
      w.conn.outbound.check();
    }
  }
  if (sweeper.sockets.size === 0 && sweeper.timer) {
    // Nothing left to watch: no timer running for nothing (a new socket starts it again).
    clearInterval(sweeper.timer);
    sweeper.timer = null;
  }
}
