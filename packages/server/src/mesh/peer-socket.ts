import { helloFor, relayIdCapability, type HelloMessage } from '@capsync/core';

/** Query parameter naming the connecting relay, so the peer knows who is on a link before its hello. */
export const RELAY_QUERY = 'relay';

/** The hello a relay sends on (and answers on) a relay-to-relay link. */
export function relayHello(relayId: string): HelloMessage {
  return helloFor('peer', [relayIdCapability(relayId)]);
}

/** HTTP base URL of a peer's ws:// or wss:// URL. */
export function httpUrlOf(wsUrl: string): string {
  return wsUrl.replace(/^ws/, 'http');
}
