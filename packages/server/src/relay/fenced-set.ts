import { CapsyncError, type CpSetMessage, type ErrorCode } from '@capsync/core';
import type { Permission } from '../auth/access.js';
import type { LockService } from '../locks/lock-service.js';
import { validateRequest } from '../locks/lock-service.js';
import type { Logger } from '../logger.js';
import type { FencedWriteForwarder } from '../mesh/fenced-write-forwarder.js';
import type { RelayMetrics } from '../metrics.js';
import type { RelayDoc } from './relay-doc.js';

/** The document connection a fenced write came in on. */
export interface FencedSetSource {
  readonly docName: string;
  readonly permission: Permission;
  /** The identity the write is made for (see ConnectionIdentity.actingFor). */
  readonly owner: string;
  /** The connection's document, or null once it closed (nothing is answered then). */
  current(): RelayDoc | null;
  reply(code: ErrorCode | '', message: string): void;
}

export interface FencedSetDeps {
  /** Set when another relay is the lock authority: fenced writes are forwarded there. */
  fencedWrites?: FencedWriteForwarder | undefined;
  locks: LockService;
  metrics: RelayMetrics;
  logger: Logger;
}

/**
 * A fenced write (`cp.set`): the lease must be current at the lock authority and belong to
 * the writer's identity (else `not-owner`), and its token at least the entry's current token,
 * checked synchronously right before the relay writes the value, so two holders' writes can
 * never land out of token order. Answered once the value is durable, after the requester was
 * sent the change itself. In a mesh with a lock authority relay the write is forwarded there,
 * naming the writer's identity, and the authority answers.
 */
export async function fencedSet(msg: CpSetMessage, source: FencedSetSource, deps: FencedSetDeps): Promise<void> {
  const { metrics } = deps;
  const reply = (code: ErrorCode | '', message = ''): void => source.reply(code, message);
  const refuse = (code: ErrorCode, message: string): void => {
    if (code === 'stale-token' || code === 'lease-lost') metrics.fencingRejections.inc({ reason: code });
    reply(code, message);
  };
  if (source.permission !== 'write') return refuse('read-only', `read-only access to "${source.docName}": fenced write refused`);
  let value: unknown;
  try {
    validateRequest({ type: 'lock-request', id: msg.id, op: 'renew', key: msg.key, token: msg.token, ttlMs: 1000, waitMs: 0 });
    value = JSON.parse(msg.json);
  } catch (err) {
    return refuse('invalid-lock-request', err instanceof CapsyncError ? err.message : 'value is not valid JSON');
  }
  const forwarder = deps.fencedWrites;
  if (forwarder) {
    // A mesh with one lock authority relay: that relay writes (see FencedWriteForwarder).
    const doc = source.current();
    if (!doc) return;
    const outcome = await forwarder.forward(doc, { ...msg, owner: source.owner });
    if (outcome.code === 'unavailable') metrics.lockUnavailable.inc();
    if (outcome.code === 'stale-token' || outcome.code === 'conflict' || outcome.code === 'lease-lost' || outcome.code === 'not-owner') {
      metrics.fencingRejections.inc({ reason: outcome.code });
    }
    reply(outcome.code, outcome.message ?? '');
    return;
  }
  try {
    await deps.locks.checkFence(msg.key, msg.token, source.owner);
  } catch (err) {
    // checkFence counted it.
    const e = err instanceof CapsyncError ? err : new CapsyncError('internal', 'internal error');
    return reply(e.code, e.message);
  }
  const doc = source.current();
  if (!doc) return;
  const outcome = await doc.writeFenced(msg.key, value, msg.token, msg.ifRev);
  if (outcome.code === 'storage-failure') deps.logger.error({ doc: source.docName, key: msg.key }, 'storing a fenced write failed');
  if (outcome.code === 'stale-token' || outcome.code === 'conflict') metrics.fencingRejections.inc({ reason: outcome.code });
  // The change itself went out (to this connection too) before this reply: or waits behind a
  // state answer, or is left to one, and the reply waits after it (DocSession.sendAfterContent).
  reply(outcome.code, outcome.message ?? '');
}
