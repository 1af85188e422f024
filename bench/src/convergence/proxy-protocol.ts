/** Messages between the bench and its proxy process (proxy.ts ↔ proxy-process.ts). */

/** One proxied TCP connection. Times are epoch ms (clock.ts); 0 = not yet. */
export interface ConnectionStats {
  route: string;
  openedAt: number;
  closedAt: number;
  /** First line of the HTTP request (`GET /doc HTTP/1.1`), '' until it is complete. */
  requestLine: string;
  /** HTTP status of the response head (101 for an accepted upgrade), 0 until it is complete. */
  status: number;
  /** When the 101 response was forwarded to the connecting side: the link is up from here. */
  upAt: number;
  lastByteAt: number;
  /** Bytes of the HTTP heads: toTarget = the request, toClient = the response. */
  head: { toTarget: number; toClient: number };
  /** Bytes after the heads (WebSocket frames, headers and masks included). */
  payload: { toTarget: number; toClient: number };
}

export type ProxyRequest =
  | { id: number; type: 'partition' }
  | { id: number; type: 'heal' }
  | { id: number; type: 'stats'; pathContains: string }
  | { id: number; type: 'forget' };

export type ProxyReply =
  | { type: 'ready'; ports: Record<string, number> }
  | { id: number; type: 'partitioned'; at: number }
  | { id: number; type: 'healed'; at: number; refusedWhilePartitioned: number }
  | {
      id: number;
      type: 'stats';
      at: number;
      healedAt: number;
      partitioned: boolean;
      /** Connection attempts refused since the partition began. */
      refused: number;
      /** Connections accepted since the last heal whose request line holds `pathContains`. */
      connections: ConnectionStats[];
    }
  | { id: number; type: 'forgotten' };
