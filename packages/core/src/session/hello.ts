import { ProtocolVersionError } from '../errors.js';
import { PROTOCOL_VERSION, RELAY_CAPABILITY, RELAY_ID_PREFIX, TOKEN_REFRESH_CAPABILITY, type HelloMessage } from '../protocol/message-types.js';
import { MUX_BATCH_CAPABILITY, MUX_CAPABILITY, MUX_FLOW_CAPABILITY } from '../protocol/mux-frame.js';

/**
 * The oldest protocol version this code still speaks. A hello outside
 * [MIN_PROTOCOL_VERSION, PROTOCOL_VERSION] is refused with `ProtocolVersionError` (close code
 * 4426): the extension messages would be misread. Raise it only when dropping support for an
 * older version; bump PROTOCOL_VERSION on any incompatible change to the extension messages.
 */
export const MIN_PROTOCOL_VERSION = 1;

/** Throws ProtocolVersionError when `version` (from the other side's hello) is not spoken here. */
export function checkProtocolVersion(version: number): void {
  if (Number.isInteger(version) && version >= MIN_PROTOCOL_VERSION && version <= PROTOCOL_VERSION) return;
  throw new ProtocolVersionError(
    `protocol version ${version} is not supported (this side speaks ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}); upgrade the older side`,
  );
}

/**
 * The lock protocol is served here: on a relay's lock endpoint, and on its multiplexed endpoint
 * (a lock session). A client whose multiplexed socket's relay does not say it (a relay from
 * before lock sessions) keeps a socket of its own to the lock endpoint.
 */
export const LOCKS_CAPABILITY = 'locks';

/** Who says hello, which fixes the capabilities it offers (see `helloFor`). */
export type HelloRole =
  /** A relay answering a client's hello on a document connection. */
  | 'relay'
  /** A relay answering on a lock connection (adds `locks`). */
  | 'relay-locks'
  /**
   * A relay answering on its multiplexed endpoint (the control session): `relay`'s, plus
   * `locks` because the socket also serves a lock session (`session-open` kind 'locks').
   */
  | 'relay-mux'
  /** A capsync client on a document or lock connection. */
  | 'client'
  /** A relay on a relay-to-relay link, either side (adds `relay`; `relay-id:` via extras). */
  | 'peer'
  /** A relay answering a peer's hello on a document connection it accepted. */
  | 'relay-to-peer'
  /** A relay forwarding one fenced write to the lock authority: served as a client, never syncs. */
  | 'fenced-writer'
  /** A relay's link to the lock authority's lock endpoint. */
  | 'authority-client';

/**
 * The one capability list: what each role offers. Defined once, so the relay, the client
 * and the links between relays cannot drift apart.
 * - ack: durable acks; error: typed errors instead of closes where possible; ping: app-level
 *   heartbeat; cp: fenced writes; quorum: quorum barriers; locks: the lock protocol;
 *   relay: the sender is a relay (honoured only with a relay credential); mux: this relay
 *   serves the multiplexed endpoint (MUX_PATH), announced in every hello a relay answers or
 *   sends to a peer, so a client or peer that fell back to a socket per document learns it
 *   can stop; mux-batch: this side of a multiplexed socket takes batches of frames (a client's
 *   multiplexed socket adds it as an extra); token-refresh: live permissions (a relay takes a
 *   fresh token on the open connection, a client understands `permission` messages). Not on
 *   the lock endpoint: a lock connection's token is renewed by reconnecting.
 */
const ROLE_CAPABILITIES: Record<HelloRole, readonly string[]> = {
  relay: ['ack', 'error', 'ping', 'cp', 'quorum', MUX_CAPABILITY, TOKEN_REFRESH_CAPABILITY],
  'relay-locks': ['ack', 'error', 'ping', 'cp', 'quorum', LOCKS_CAPABILITY, MUX_CAPABILITY],
  'relay-mux': ['ack', 'error', 'ping', 'cp', 'quorum', LOCKS_CAPABILITY, MUX_CAPABILITY, MUX_BATCH_CAPABILITY, MUX_FLOW_CAPABILITY, TOKEN_REFRESH_CAPABILITY],
  client: ['ack', 'error', 'ping', 'quorum', TOKEN_REFRESH_CAPABILITY],
  peer: ['ack', 'error', 'ping', RELAY_CAPABILITY, MUX_CAPABILITY],
  'relay-to-peer': ['ack', 'error', 'ping', 'cp', 'quorum', RELAY_CAPABILITY, MUX_CAPABILITY],
  'fenced-writer': ['ack', 'error', 'cp'],
  'authority-client': [RELAY_CAPABILITY],
};

/** The hello `role` sends, with `extras` (an owner key, a relay id, declared writers...) appended. */
export function helloFor(role: HelloRole, extras: readonly string[] = []): HelloMessage {
  return { type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: [...ROLE_CAPABILITIES[role], ...extras] };
}

/** The capabilities `role` offers (without extras). */
export function capabilitiesOf(role: HelloRole): readonly string[] {
  return ROLE_CAPABILITIES[role];
}

/** The `relay-id:` capability of a relay's hello. */
export function relayIdCapability(relayId: string): string {
  return RELAY_ID_PREFIX + relayId;
}
