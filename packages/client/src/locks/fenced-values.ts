import * as Y from 'yjs';
import {
  CapsyncError,
  LeaseLostError,
  errorFromCode,
  readAllFenced,
  readFenced,
  type CpReplyMessage,
  type FencedEntry,
  type Message,
} from '@capsync/core';
import { PendingRequests } from './pending-requests.js';
import type { Lease } from './lease.js';

/** What fenced values need from their document's relay link. */
export interface FencedLink {
  /** Sends if the link is open; false otherwise. */
  send(msg: Message): boolean;
  /** Calls `fn` once the link is (next) open; returns an unsubscribe function. */
  onceOpen(fn: () => void): () => void;
}

/**
 * `handle.cp`: the document's fenced (CP) values. Reads are local, like the rest of the
 * document (the value the relay last wrote, as far as this replica knows). Writes go to the
 * relay with a lease; the relay checks the lease with the lock authority and the token
 * against the entry's, writes the value into the document itself, and answers once it is
 * durable. Other routes into the fenced area are refused by the relay.
 */
export class FencedValues {
  /** Made on the first fenced write: most documents never see one (a Map per document opened). */
  private pendingValue: PendingRequests<CpReplyMessage> | null = null;

  private get pending(): PendingRequests<CpReplyMessage> {
    return (this.pendingValue ??= new PendingRequests<CpReplyMessage>());
  }

  constructor(
    private readonly doc: Y.Doc,
    private readonly link: FencedLink,
    private readonly defaultTimeoutMs: number,
  ) {}

  /** The value last written under `key`, as this replica knows it (AP read). */
  get(key: string): unknown {
    return readFenced(this.doc, key)?.value;
  }

  /** The value and the token that wrote it. */
  entry(key: string): FencedEntry | undefined {
    return readFenced(this.doc, key);
  }

  /** Every fenced key with its value and token. */
  entries(): Map<string, FencedEntry> {
    return readAllFenced(this.doc);
  }

  /**
   * Writes `value` (any JSON value) under `key`, fenced by `lease` (which must be the lease
   * on the same key). Resolves once the relay applied it and committed it; by then this
   * replica has it too. Rejects with LeaseLostError (lease gone or no longer current),
   * NotOwnerError (the lease was acquired by another identity: another user, or on a relay
   * without auth another client's owner key),
   * StaleTokenError (a newer holder wrote since), ConflictError (`ifRev` given and the entry
   * is no longer at that revision), UnavailableError (relay or lock authority unreachable
   * within `timeoutMs`: the write may or may not have happened), AuthError.
   *
   * For a read-modify-write (decrement a stock count), pass the `rev` of the entry you read
   * as `ifRev`: a lease only bounds how long you are alone, and a previous holder's write
   * that was delayed past its lease must not be silently overwritten by yours.
   */
  async set(key: string, value: unknown, lease: Lease, options: { timeoutMs?: number; ifRev?: number } = {}): Promise<void> {
    if (lease.key !== key) throw new CapsyncError('invalid-lock-request', `the lease is for "${lease.key}", not "${key}"`);
    if (!lease.valid) throw lease.lostBeforeRelease ?? new LeaseLostError(`lease on "${key}" is no longer held`);
    const json = JSON.stringify(value);
    if (json === undefined) throw new CapsyncError('invalid-lock-request', 'the value must be JSON-serializable');
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const { id, reply } = this.pending.start(timeoutMs, () => `cp.set "${key}"`);
    const msg: Message = { type: 'cp-set', id, key, token: lease.token, json, ...(options.ifRev !== undefined ? { ifRev: options.ifRev } : {}) };
    const trySend = (): boolean => {
      if (!this.link.send(msg)) return false;
      this.pending.markSent(id);
      return true;
    };
    if (!trySend()) {
      const unsubscribe = this.link.onceOpen(() => void trySend());
      void reply.finally(unsubscribe).catch(() => {});
    }
    const r = await reply;
    if (r.code !== '') throw errorFromCode(r.code, r.message);
  }

  /** @internal A cp-reply from the relay. */
  onReply(msg: CpReplyMessage): void {
    this.pendingValue?.settle(msg.id, msg);
  }

  /** @internal The link closed: writes sent on it have an unknown outcome. */
  onLinkClose(): void {
    this.pendingValue?.connectionLost('link closed');
  }

  /** @internal The document is closing. */
  close(): void {
    this.pendingValue?.failAll(() => new CapsyncError('internal', 'the document was closed'));
  }
}
