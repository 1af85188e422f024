/**
 * One WebSocket of a forwarding relay to its lock authority's lock endpoint, and what is read
 * from it before any request: the hello both sides send, and whether the authority's hello
 * says it can be one. The link's life (reconnects, rotation, heartbeats) is AuthorityLink's.
 */
import * as jose from 'jose';
import WebSocket from 'ws';
import { checkProtocolVersion, helloFor, relayIdCapability, type HelloMessage } from '@capsync/core';
import { LOCK_BACKEND_CAPABILITY } from './lock-connection.js';

/** One WebSocket to the authority. */
export interface Link {
  readonly ws: WebSocket;
  /** The authority answered the hello: requests may be sent. */
  ready: boolean;
  readyAt: number;
  closed: boolean;
  /** Last time anything (a frame or a pong) came from the authority. */
  lastHeard: number;
  /** When the credential this link was opened with expires (ms since epoch), if it says. */
  readonly credentialExpiresAt: number | undefined;
  /** Why it failed, for the UnavailableError of requests that waited for it. */
  lastError: string;
  readonly timers: NodeJS.Timeout[];
  /** Replaces the current link (credential rotation) instead of being the first one. */
  readonly successor: boolean;
}

/**
 * Opens the socket, presenting the relay credential (`token`) as a bearer token. TCP connect
 * and upgrade must complete within `handshakeTimeoutMs`.
 */
export function openAuthoritySocket(endpoint: string, token: string | undefined, handshakeTimeoutMs: number): WebSocket {
  return new WebSocket(endpoint, ['capsync'], {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    handshakeTimeout: handshakeTimeoutMs,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
  });
}

/** The hello a forwarding relay sends: a relay (its credential says so too), named. */
export function authorityHello(relayId: string): HelloMessage {
  return helloFor('authority-client', [relayIdCapability(relayId)]);
}

/**
 * Why the relay at `url`, whose hello announced `capabilities`, cannot be this relay's lock
 * authority, or undefined if it can: it must serve locks, and not forward them itself (a
 * relay pointed at itself, or a chain, would pass requests around until their deadlines).
 */
export function refusalOf(hello: { protocolVersion: number; capabilities: readonly string[] }, url: string): string | undefined {
  const { capabilities } = hello;
  try {
    checkProtocolVersion(hello.protocolVersion);
  } catch (err) {
    return `${url} ${(err as Error).message}`;
  }
  if (!capabilities.includes('locks')) return `${url} does not serve locks (its hello has no "locks" capability)`;
  if (capabilities.includes(`${LOCK_BACKEND_CAPABILITY}forwarded`)) {
    return `${url} is not a lock authority: it forwards its own lock requests (set --lock-authority only on the other relays)`;
  }
  return undefined;
}

/** When a JWT expires (ms since epoch), read without verifying it (the authority does that). */
export function expiryOf(token: string | undefined): number | undefined {
  if (!token) return undefined;
  try {
    const { exp } = jose.decodeJwt(token);
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}
