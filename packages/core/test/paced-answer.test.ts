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

/** A host's hooks that do nothing, but those given. */
function hostHooks(given: Partial<SessionHooks> & { hello: () => HelloMessage | null }): SessionHooks {
  return {
    applyUpdate: (): AppliedUpdate | null => null,
    barrier: () => {},
    awareness: () => {},
    extension: () => {},
    acked: () => {},
    position: () => 0,
    beforeStep2: () => {},
    messageIn: () => {},
    messageOut: () => {},
    durable: () => {},
    failing: () => {},
    unexpected: () => {},
    ended: () => {},
    ...given,
  };
}

function relayLike(room?: { hasRoom(wake: () => void): boolean }) {
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
  const hooks = hostHooks({ hello: () => helloFor('relay-to-peer'), acked: (pos) => acked.push(pos), position: () => position });
  const session = new DocSession(channel, hooks, { maxQueuedBytes: 1 << 20, numberSent: true, ...(room ? { room } : {}) });
  session.open(replica);
  channel.receive(helloFor('peer'));
  channel.receive({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
  return { channel, session, doc, pieces, acked, move: (to: number) => (position = to) };
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

/** A relay serving a client (nothing numbered), its room the address's share of the unsent budget, answering from its document. */
function servingClient(pieceBytes = 0) {
  let room = true;
  let wake: (() => void) | null = null;
  const channel = new HeldChannel();
  const doc = new Y.Doc();
  Y.applyUpdate(doc, updateOf('seed', 1));
  Y.applyUpdate(doc, updateOf('more', 2));
  Y.applyUpdate(doc, updateOf('rest', 3));
  const replica: SessionReplica = {
    doc,
    paused: false,
    encodeState: (sv) => Y.encodeStateAsUpdate(doc, sv),
    // In pieces when asked (one per client of the document), else one.
    stateUpdates: (sv) => (pieceBytes ? [1, 2, 3].map((c) => updateOf(['seed', 'more', 'rest'][c - 1]!, c)) : [Y.encodeStateAsUpdate(doc, sv)]),
    whenWritesSettled: () => Promise.resolve(),
    awareness: { encode: () => null },
  };
  const hooks = hostHooks({ hello: () => helloFor('relay') });
  const room_ = {
    hasRoom: (w: () => void) => {
      if (!room) wake = w;
      return room;
    },
  };
  const session = new DocSession(channel, hooks, { maxQueuedBytes: 1 << 20, numberSent: false, room: room_ });
  session.open(replica);
  channel.receive(helloFor('client'));
  const texts = (): string[] =>
    channel.sent.map(({ msg }) => {
      if (msg.type !== 'update' && msg.type !== 'sync-step-2') return msg.type;
      const d = new Y.Doc();
      Y.applyUpdate(d, msg.update);
      return `${msg.type}:${d.getText('t').toString()}`;
    });
  return {
    channel,
    session,
    doc,
    texts,
    /** The address goes over (false) or back within (true) its share. */
    setRoom(to: boolean) {
      room = to;
      if (to) wake?.();
    },
    /** A change made on the relay (in the document first), then broadcast to this session. */
    broadcast(text: string, clientID: number): boolean {
      const u = updateOf(text, clientID);
      Y.applyUpdate(doc, u);
      return session.sendUpdate(u);
    },
  };
}

describe('broadcasts and fenced replies while a step 1 waits for its answer (a relay serving a client)', () => {
  it('a broadcast is not sent while the step 1 waits for room: the answer, made once there is room, carries it', () => {
    const c = servingClient();
    c.setRoom(false);
    c.channel.receive({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    const content = (): string[] => c.texts().filter((t) => t.startsWith('update') || t.startsWith('sync-step-2'));
    expect(content()).toEqual([]);
    expect(c.broadcast('pasted', 9)).toBe(true);
    expect(content()).toEqual([]);
    c.setRoom(true);
    const answer = c.texts().filter((t) => t.startsWith('sync-step-2'));
    expect(answer).toHaveLength(1);
    expect(answer[0]).toContain('pasted');
    // Once answered, broadcasts go out again.
    expect(c.broadcast('later', 8)).toBe(true);
    expect(c.texts().at(-1)).toBe('update:later');
  });

  it("a fenced write's reply waits for the answer that carries the value (the client's replica has it when set() resolves)", () => {
    const c = servingClient();
    c.setRoom(false);
    c.channel.receive({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    c.broadcast('fenced', 7);
    expect(c.session.sendAfterContent({ type: 'cp-reply', id: 1, code: '', message: '' })).toBe(true);
    expect(c.texts()).not.toContain('cp-reply');
    c.setRoom(true);
    const t = c.texts();
    expect(t.findIndex((x) => x.startsWith('sync-step-2') && x.includes('fenced'))).toBeLessThan(t.indexOf('cp-reply'));
    expect(t.indexOf('cp-reply')).toBeGreaterThan(0);
  });

  it('while an answer goes out in pieces, the reply goes after the broadcast held behind it, even when one diff replaces what was held', () => {
    const c = servingClient(1);
    c.channel.receive({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    // Two pieces are out; the rest waits for them to be written (and for room).
    expect(c.texts().filter((t) => t.startsWith('update'))).toHaveLength(2);
    c.setRoom(false);
    expect(c.broadcast('fenced', 7)).toBe(true);
    c.session.sendAfterContent({ type: 'cp-reply', id: 1, code: '', message: '' });
    // Past what may be held: one diff from the answer's state vector replaces what was held; the reply is kept.
    expect(c.broadcast('x'.repeat(1024 * 1024 + 1), 6)).toBe(true);
    while (c.channel.writeOne());
    c.setRoom(true);
    while (c.channel.writeOne());
    const t = c.texts();
    const step2 = t.findIndex((x) => x.startsWith('sync-step-2'));
    const fenced = t.findIndex((x, i) => i > step2 && x.startsWith('update') && x.includes('fenced'));
    expect(step2).toBeGreaterThan(0);
    expect(fenced).toBeGreaterThan(step2);
    expect(t.indexOf('cp-reply')).toBeGreaterThan(fenced);
  });
});
