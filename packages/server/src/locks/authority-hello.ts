/**
 * What a forwarding relay's link to its lock authority reads before any request: the hello
 * both sides send, whether the authority's hello says it can be one, and when the credential
 * the link was opened with expires. The link's life (dialling, reconnects, rotation,
 * heartbeats) is AuthorityLink's.
 */
import * as jose from 'jose';
import { checkProtocolVersion, helloFor, relayIdCapability, type HelloMessage } from '@capsync/core';
import { LOCK_BACKEND_CAPABILITY } from './lock-connection.js';

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
