import type { WebSocketLike } from '@capsync/core';

/**
 * The part of the WebSocket API the client uses (core's WebSocketLike, which its
 * WebSocketChannel runs on): the browser's WebSocket and the `ws` package both fit, so
 * Node < 22 can pass `ws` as `createClient({ WebSocket })`.
 */
export type { WebSocketLike };

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The global WebSocket (browsers, Node 22+), or undefined. */
export function globalWebSocket(): WebSocketConstructor | undefined {
  return (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
}
