import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import {
  DocSession,
  decodeMessage,
  encodeMessage,
  helloFor,
  type AppliedUpdate,
  type Channel,
  type ChannelHandler,
  type HelloMessage,
  type Message,
  type SessionHooks,
  type SessionReplica,
} from '../src/index.js';

/**
 * Review of the paced state answer (issue 12, commit 2539912): a channel whose written-out
 * callbacks the test runs, and a relay-like host whose document position the test moves.
 */
class HeldChannel implements Channel {
  readonly sent: { msg: Message; onWritten: (() => void) | undefined }[] = [];
  handler: ChannelHandler | null = null;
  bufferedAmount = 0;
  send(bytes: Uint8Array, onWritten?: () => void): void {
    this.sent.push({ msg: decodeMessage(bytes), onWritten });
  }
  close(): void {}
  terminate(): void {}
  attach(handler: ChannelHandler): void {
    this.handler = handler;
  }
  receive(msg: Message): void {
    this.handler!.message(encodeMessage(msg));
  }
  /** Runs the written-out callback of the oldest message that has one and did not run yet. */
  writeOne(): boolean {
    const next = this.sent.find((s) => s.onWritten);
    if (!next) return false;
    const cb = next.onWritten!;
    next.onWritten = undefined;
    cb();
    return true;
  }
  docMessages(): Message[] {
    return this.sent.map((s) => s.msg).filter((m) => m.type === 'update' || m.type === 'sync-step-2');
  }
}

function updateOf(text: string, clientID: number): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = clientID;
  doc.getText('t').insert(0, text);
  return Y.encodeStateAsUpdate(doc);
}

function relayLike() {
  const channel = new HeldChannel();
  const doc = new Y.Doc();
  const pieces = [updateOf('a', 1), updateOf('b', 2), updateOf('c', 3), updateOf('d', 4)];
  const replica: SessionReplica = {
    doc,
    paused: false,
    encodeState: (sv) => Y.encodeStateAsUpdate(doc, sv),
    stateUpdates: () => pieces,
    whenWritesSettled: () => Promise.resolve(),
    awareness: { encode: () => null },
  };
  const acked: number[] = [];
  // The document's position: every change applied on the relay moves it (DocReplication.applied).
  let position = 10;
  const hooks: SessionHooks = {
    hello: (): HelloMessage | null => helloFor('relay-to-peer'),
    applyUpdate: (): AppliedUpdate | null => null,
    barrier: () => {},
    awareness: () => {},
    extension: () => {},
    acked: (pos) => acked.push(pos),
    position: () => position,
    beforeStep2: () => {},
    messageIn: () => {},
    messageOut: () => {},
    durable: () => {},
    failing: () => {},
    unexpected: () => {},
    ended: () => {},
  };
  const session = new DocSession(channel, hooks, { maxQueuedBytes: 1 << 20, numberSent: true });
  session.open(replica);
  channel.receive(helloFor('peer'));
  channel.receive({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
  return { channel, session, pieces, acked, move: (to: number) => (position = to) };
}

describe('paced state answer (review of issue 12)', () => {
  it('an ack of the first piece does not claim the peer holds the whole document (quorum durability)', () => {
    const { channel, acked, move } = relayLike();
    // Numbered messages so far: our step 1 is not document content; the first two pieces went out.
    const seqOfFirstPiece = 1;
    expect(channel.docMessages().map((m) => m.type)).toEqual(['update', 'update']);
    // A change arrives on the relay meanwhile (position 11), and the peer acks the first piece:
    // it holds a quarter of the state, certainly not the change at position 11.
    move(11);
    channel.writeOne();
    channel.receive({ type: 'ack', seq: seqOfFirstPiece, stateVector: new Uint8Array([0]) });
    expect(Math.max(0, ...acked)).toBeLessThan(10);
  });

  it('the step 2 claims the position the pieces were taken at, not the one when it was sent', () => {
    const { channel, acked, move } = relayLike();
    while (channel.writeOne()) move(20); // changes keep coming while the pieces go out (broadcast later)
    const doc = channel.docMessages();
    expect(doc.map((m) => m.type)).toEqual(['update', 'update', 'update', 'sync-step-2']);
    channel.receive({ type: 'ack', seq: 4, stateVector: new Uint8Array([0]) });
    // The pieces were the state at position 10: the changes up to 20 are not in them.
    expect(acked.at(-1)).toBe(10);
  });

  it('a broadcast during the answer reaches the peer after the state it depends on (no pending content on the peer)', () => {
    const { channel, session, pieces } = relayLike();
    const later = updateOf('z', 9);
    session.sendUpdate(later);
    while (channel.writeOne());
    const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex');
    const doc = channel.docMessages().map((m) => hex((m as { update: Uint8Array }).update));
    // Every piece (and the step 2) before the broadcast, in order.
    expect(doc).toEqual([...pieces, later].map(hex));
  });
});
