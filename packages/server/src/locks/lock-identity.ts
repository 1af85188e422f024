import { hash, randomUUID } from 'node:crypto';
import { OWNER_KEY_MAX_LENGTH, OWNER_KEY_MIN_LENGTH, OWNER_KEY_PREFIX, ProtocolError } from '@capsync/core';
import type { LeaseHolder } from './lease-quota.js';

/**
 * Who a lease belongs to. Every lock operation and fenced write is made for one identity,
 * and only the identity that acquired a lease may renew, release, check or write under it.
 *
 * An identity is a string in one of three namespaces, so one kind can never pose as another:
 * - `sub:<subject>`: the token's `sub` on a relay with auth (the same user across tabs,
 *   connections and reconnects, and across the relays of a mesh that share the secret);
 * - `key:<SHA-256 of the owner key, base64url>`: a client that announced `owner:<key>` in its
 *   hello and has no `sub` (an open relay, or a token without `sub`). The key is a secret
 *   only that client knows; the relay keeps, logs and stores only its hash;
 * - `conn:<random UUID>`: any other connection, which is then its own identity (random, so
 *   identities of different relays never collide when forwarded to a lock authority).
 */
export class ConnectionIdentity {
  /** Made when first needed (most document connections never take part in a lease). */
  private own: string | undefined;
  private keyed: string | undefined;

  /** `address`: the client's address (the TCP peer's), which keyed and connection identities' leases count against. */
  constructor(private readonly grant: { subject?: string | undefined; relay?: boolean | undefined; address?: string | undefined }) {}

  /**
   * Takes the owner key from a hello, if it carries one. Throws ProtocolError('bad-message')
   * for a malformed key, or one different from the key an earlier hello of this connection
   * announced (its leases would change hands mid-connection).
   */
  hello(capabilities: readonly string[]): void {
    const key = ownerKeyOf(capabilities);
    if (key === undefined) return;
    const keyed = keyIdentity(key);
    if (this.keyed !== undefined && this.keyed !== keyed) throw new ProtocolError('bad-message', 'the owner key of a connection cannot change');
    this.keyed = keyed;
  }

  /** This connection's identity: its subject, else its owner key's, else its own. */
  get identity(): string {
    if (this.grant.subject) return (this.own ??= `sub:${this.grant.subject}`);
    return this.keyed ?? (this.own ??= `conn:${randomUUID()}`);
  }

  /**
   * The identity if it outlives the connection (a token `sub` or an owner key), else undefined:
   * what a reconnecting client can prove it was before (awareness reservations).
   */
  get lasting(): string | undefined {
    return this.grant.subject ? this.identity : this.keyed;
  }

  /**
   * The identity a request acts for: the one a forwarding relay names (`owner` of a
   * lock-request or cp-set), honoured only on a connection with a relay credential; for
   * anyone else that field is ignored and the connection's own identity is used.
   */
  actingFor(forwarded: string | undefined): string {
    return this.grant.relay && forwarded ? forwarded : this.identity;
  }

  /**
   * What a lock request counts against (see LeaseHolder): the identity it acts for, and the
   * client's address unless that identity is a token's `sub`. A peer relay's requests carry
   * no address: its own is not its clients', and the relay that forwards them counted theirs.
   */
  leaseHolder(forwarded: string | undefined): LeaseHolder {
    const identity = this.actingFor(forwarded);
    if (this.grant.relay || this.grant.subject || this.grant.address === undefined) return { identity };
    return { identity, address: this.grant.address };
  }
}

/** The owner key a hello announces, or undefined; ProtocolError('bad-message') if malformed. */
export function ownerKeyOf(capabilities: readonly string[]): string | undefined {
  const cap = capabilities.find((c) => c.startsWith(OWNER_KEY_PREFIX));
  if (cap === undefined) return undefined;
  const key = cap.slice(OWNER_KEY_PREFIX.length);
  if (key.length < OWNER_KEY_MIN_LENGTH || key.length > OWNER_KEY_MAX_LENGTH || !/^[A-Za-z0-9_-]+$/.test(key)) {
    // The key itself is never echoed.
    throw new ProtocolError('bad-message', `an owner key must be ${OWNER_KEY_MIN_LENGTH} to ${OWNER_KEY_MAX_LENGTH} base64url characters`);
  }
  return key;
}

/** One-shot `hash` (Node ≥ 20.12): a createHash object per document session cost ~5 µs of a relay's open of it. */
function keyIdentity(key: string): string {
  return `key:${hash('sha256', key, 'base64url')}`;
}
