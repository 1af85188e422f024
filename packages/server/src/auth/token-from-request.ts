import type { IncomingMessage } from 'node:http';
import { CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX } from '@capsync/core';
import { tokenFromQuery } from './url-token.js';

/** The sub-protocols are core's (what every capsync Dialer offers): re-exported for the server's users. */
export { CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX };

/**
 * Finds the credential of a request, in this order: `Authorization: Bearer`, a
 * `capsync.jwt.<token>` WebSocket sub-protocol (browsers cannot set headers on WebSockets),
 * the `token` query parameter (any case or percent-encoding of its name: `tokenFromQuery`, the
 * same reading the log redaction uses).
 */
export function tokenFromRequest(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  const bearer = auth ? /^bearer\s+(\S+)\s*$/i.exec(auth) : null;
  if (bearer) return bearer[1];
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols) {
    for (const p of protocols.split(',')) {
      const trimmed = p.trim();
      if (trimmed.startsWith(TOKEN_PROTOCOL_PREFIX)) return trimmed.slice(TOKEN_PROTOCOL_PREFIX.length);
    }
  }
  return tokenFromQuery(req.url ?? '/');
}

/**
 * The sub-protocol to answer with: 'capsync' when offered, else the first one offered
 * (a browser fails the handshake if the server picks none of the offered protocols).
 */
export function selectProtocol(offered: Set<string>): string | false {
  if (offered.has(CAPSYNC_PROTOCOL)) return CAPSYNC_PROTOCOL;
  const first = offered.values().next();
  return first.done ? false : first.value;
}
