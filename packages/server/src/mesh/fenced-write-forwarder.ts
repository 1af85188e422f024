import {
  dialOnce,
  helloFor,
  decodeMessage,
  encodeMessage,
  type CpSetMessage,
  type DialedLink,
  type ErrorCode,
  type Message,
} from '@capsync/core';
import type { Logger } from '../logger.js';
import type { AuthorityWriter } from '../relay/doc-writer.js';
import type { FencedOutcome } from '../relay/fenced-writes.js';
import { OutboundTransport } from '../relay/outbound-transport.js';
import type { RelayDoc } from '../relay/relay-doc.js';
import type { SendBufferOptions } from '../relay/send-buffer.js';

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
  /** The connection's send-buffer bounds (it sends one request: they only have to be there). */
  outbound: SendBufferOptions;
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
 * credential, carrying the `cp-set`: one attempt of core's Dialer (`dialOnce`: the credential,
 * the hello, the protocol version check), bounded by the write's deadline, not retried (the
 * client retries a write answered 'unavailable'). Not a session on the pair's multiplexed
 * socket even when the authority is a peer: the sessions a peer opens there are served as peer
 * document links (trusted updates, the peer's relay id, no fencing of its own), while a
 * forwarded write must be served as a client's, through the authority's fencing, owner
 * honoured; and it sends no sync step 1 (it never syncs the whole document). The authority sends the change itself on that connection
 * before its `cp-reply`; it is applied here (trusted: the authority wrote it) and committed
 * before the outcome is returned, so the requesting client receives the value before the
 * answer, as with a local fenced write. The rest of the mesh gets it through peering.
 */
export class FencedWriteForwarder {
  constructor(private readonly options: FencedWriteForwarderOptions) {}

  async forward(doc: RelayDoc, msg: CpSetMessage): Promise<FencedOutcome> {
    const { url, relayId, credential, timeoutMs, outbound, logger } = this.options;
    const error = (err: Error) => logger.debug({ doc: doc.name, err: err.message, relayId }, 'forwarding a fenced write failed');
    // Not a peer link (no relay query parameter): the authority serves it as a client with
    // this relay's credential, so the cp-set goes through its fencing like any other.
    const dial = dialOnce({
      url,
      path: encodeURIComponent(doc.name),
      credential: () => credential().catch(() => undefined),
      connect: (target, protocols, opened) => new OutboundTransport(target, protocols, opened, { outbound, error }),
      liveness: { kind: 'none' },
      handshakeTimeoutMs: timeoutMs,
      hello: helloFor('fenced-writer'),
      unrefTimers: true,
    });
    return new Promise<FencedOutcome>((resolve) => {
      let link: DialedLink | null = null;
      let settled = false;
      const finish = (outcome: FencedOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (link) link.channel.terminate();
        else dial.cancel(outcome.message ?? 'the fenced write was given up');
        resolve(outcome);
      };
      const timer = setTimeout(
        () => finish({ code: 'unavailable', message: `the lock authority relay did not answer the fenced write within ${timeoutMs} ms` }),
        timeoutMs,
      );
      dial.link.then(
        (l) => {
          if (settled) return l.channel.terminate();
          link = l;
          this.exchange(doc, msg, l, finish);
        },
        (err: Error) => finish({ code: 'unavailable', message: `the lock authority relay closed the fenced write: ${err.message}` }),
      );
    });
  }

  /** Sends the write on the open link and reads the answer (and the change before it). */
  private exchange(doc: RelayDoc, msg: CpSetMessage, link: DialedLink, finish: (outcome: FencedOutcome) => void): void {
    let applied: Promise<unknown> = Promise.resolve();
    link.channel.attach({
      message: (bytes) => {
        let m: Message;
        try {
          m = decodeMessage(bytes);
        } catch (err) {
          finish({ code: 'unavailable', message: `bad answer from the lock authority relay: ${(err as Error).message}` });
          return;
        }
        // Its hello (the Dialer checked its protocol version), sync step 1 (not answered: this
        // link never syncs the document), awareness: not this link's business.
        if (m.type === 'update' || m.type === 'sync-step-2') {
          try {
            applied = doc.receive(m.update, AUTHORITY_WRITER).durable;
          } catch (err) {
            this.options.logger.error({ err, doc: doc.name }, 'a fenced write from the lock authority relay could not be applied');
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
      },
      close: (code, reason) => finish({ code: 'unavailable', message: `the lock authority relay closed the fenced write: ${reason || `closed with code ${code}`}` }),
      error: () => {},
    });
    link.channel.send(encodeMessage({ ...msg, id: 1 }));
  }
}
