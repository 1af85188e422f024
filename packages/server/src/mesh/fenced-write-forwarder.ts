import { WebSocket } from 'ws';
import {
  checkProtocolVersion,
  helloFor,
  decodeMessage,
  encodeMessage,
  type CpSetMessage,
  type ErrorCode,
  type Message,
} from '@capsync/core';
import type { Logger } from '../logger.js';
import type { AuthorityWriter } from '../relay/doc-writer.js';
import type { FencedOutcome } from '../relay/fenced-writes.js';
import type { RelayDoc } from '../relay/relay-doc.js';
import { CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX } from '../auth/token-from-request.js';

/**
 * The authority's fenced writes, as a writer of the document (trusted: it writes the fenced
 * area) and as their source for the fan-out (it is not a peer of the document).
 */
const AUTHORITY_WRITER: AuthorityWriter = { kind: 'authority', source: { kind: 'authority' } };

export interface FencedWriteForwarderOptions {
  /** The lock authority relay, ws://host:port: it performs every fenced write of the mesh. */
  url: string;
  relayId: string;
  credential: () => Promise<string | undefined>;
  /** A forwarded write not answered within this time is answered 'unavailable'. */
  timeoutMs: number;
  logger: Logger;
}

/**
 * Fenced writes (`cp.set`) in a mesh with one lock authority relay are performed by that relay,
 * not by the relay the client is connected to.
 *
 * Why: every relay's replica would check a writer's token and `ifRev` against its own state,
 * which may lag behind a write another relay just made, and concurrent writes to one key merge
 * by Yjs client id, not by token. One writer, checking against the one state every fenced write
 * went through, keeps fenced values linearizable (fencing order and `ifRev` conflicts), however
 * the relays are connected.
 *
 * How: a short connection to the authority's document path, as a client with this relay's
 * credential, carrying the `cp-set`. The authority sends the change itself on that connection
 * before its `cp-reply`; it is applied here (trusted: the authority wrote it) and committed
 * before the outcome is returned, so the requesting client receives the value before the
 * answer, as with a local fenced write. The rest of the mesh gets it through peering.
 */
export class FencedWriteForwarder {
  constructor(private readonly options: FencedWriteForwarderOptions) {}

  async forward(doc: RelayDoc, msg: CpSetMessage): Promise<FencedOutcome> {
    const { url, relayId, credential, timeoutMs, logger } = this.options;
    const deadline = performance.now() + timeoutMs;
    const token = await credential().catch(() => undefined);
    // Not a peer link (no relay query parameter): the authority serves it as a client with
    // this relay's credential, so the cp-set goes through its fencing like any other.
    const ws = new WebSocket(`${url}/${encodeURIComponent(doc.name)}`, token ? [CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token] : [CAPSYNC_PROTOCOL], {
      handshakeTimeout: timeoutMs,
      perMessageDeflate: false,
    });
    ws.on('error', (err) => logger.debug({ doc: doc.name, err: err.message, relayId }, 'forwarding a fenced write failed'));
    return new Promise<FencedOutcome>((resolve) => {
      let applied: Promise<unknown> = Promise.resolve();
      let settled = false;
      const finish = (outcome: FencedOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        resolve(outcome);
      };
      const timer = setTimeout(
        () => finish({ code: 'unavailable', message: `the lock authority relay did not answer the fenced write within ${timeoutMs} ms` }),
        Math.max(0, deadline - performance.now()),
      );
      ws.on('open', () => {
        ws.send(encodeMessage(helloFor('fenced-writer')));
        ws.send(encodeMessage({ ...msg, id: 1 }));
      });
      ws.on('message', (data: Buffer) => {
        let m: Message;
        try {
          m = decodeMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        } catch (err) {
          finish({ code: 'unavailable', message: `bad answer from the lock authority relay: ${(err as Error).message}` });
          return;
        }
        if (m.type === 'hello') {
          try {
            checkProtocolVersion(m.protocolVersion);
          } catch (err) {
            finish({ code: 'unavailable', message: `the lock authority relay: ${(err as Error).message}` });
          }
          return;
        }
        if (m.type === 'update' || m.type === 'sync-step-2') {
          try {
            applied = doc.receive(m.update, AUTHORITY_WRITER).durable;
          } catch (err) {
            logger.error({ err, doc: doc.name }, 'a fenced write from the lock authority relay could not be applied');
            finish({ code: 'unavailable', message: 'the fenced write could not be applied on this relay' });
          }
          return;
        }
        if (m.type !== 'cp-reply' || m.id !== 1) return;
        const outcome: FencedOutcome = { code: m.code as ErrorCode | '', message: m.message };
        applied.then(
          () => {
            // The requester gets the change before the answer, as with a local fenced write.
            doc.flushBroadcasts();
            finish(outcome);
          },
          () => finish({ code: 'storage-failure', message: 'the fenced write could not be stored on this relay' }),
        );
      });
      ws.on('close', (code: number, reason: Buffer) => {
        if (settled) return;
        const why = reason.toString() || `closed with code ${code}`;
        finish({ code: 'unavailable', message: `the lock authority relay closed the fenced write: ${why}` });
      });
    });
  }
}
