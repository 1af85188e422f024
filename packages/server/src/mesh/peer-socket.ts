import { WebSocket } from 'ws';
import { helloFor, relayIdCapability, type HelloMessage } from '@capsync/core';
import { CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX } from '../auth/token-from-request.js';

/** Query parameter naming the connecting relay, so the peer knows who is on a link before its hello. */
export const RELAY_QUERY = 'relay';

/** The hello a relay sends on (and answers on) a relay-to-relay link. */
export function relayHello(relayId: string): HelloMessage {
  return helloFor('peer', [relayIdCapability(relayId)]);
}

/**
 * Opens a WebSocket from this relay to `path` on a peer relay, presenting the relay
 * credential, naming this relay in the query, and giving up on a handshake that does not
 * complete within `handshakeTimeoutMs` (a held or black-holed link).
 */
export function openPeerSocket(baseUrl: string, path: string, relayId: string, token: string | undefined, handshakeTimeoutMs: number): WebSocket {
  const url = `${baseUrl}/${path}?${RELAY_QUERY}=${encodeURIComponent(relayId)}`;
  const protocols = token ? [CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token] : [CAPSYNC_PROTOCOL];
  const ws = new WebSocket(url, protocols, { handshakeTimeout: handshakeTimeoutMs, perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  return ws;
}

/** HTTP base URL of a peer's ws:// or wss:// URL. */
export function httpUrlOf(wsUrl: string): string {
  return wsUrl.replace(/^ws/, 'http');
}
