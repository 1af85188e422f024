import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import {
  CapsyncError,
  CloseCode,
  DocSession,
  PROTOCOL_VERSION,
  ProtocolError,
  channelPair,
  decodeMessage,
  encodeMessage,
  helloFor,
  type AppliedUpdate,
  type Channel,
  type HelloMessage,
  type Message,
  type SessionHooks,
  type SessionReplica,
} from '../src/index.js';

/** A promise resolved from outside. */
function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((res) => (resolve = res));
  return { promise, resolve };
}

/** A replica over a Y.Doc whose pause and "everything settled" the test controls. */
class TestReplica implements SessionReplica {
  readonly doc = new Y.Doc();
  paused = false;
  settled: Promise<void> = Promise.resolve();
  readonly awareness = { encode: (): Uint8Array | null => null };
  encodeState(stateVector: Uint8Array): Uint8Array {
    return Y.encodeStateAsUpdate(this.doc, stateVector);
  }
  whenWritesSettled(): Promise<void> {
    return this.settled;
  }
}

/** A host that applies every update, each made durable when the test says (`commits`). */
class TestHost implements SessionHooks {
  readonly commits: { resolve(): void }[] = [];
  readonly barriers: number[] = [];
  readonly extensions: Message[] = [];
  readonly ackedPositions: number[] = [];
  readonly ackedSeqs: number[] = [];
  readonly sentStep2s: number[] = [];
  /** The sync rounds completed (synced). */
  readonly rounds: number[] = [];
  readonly durables: ('sync-step-2' | 'update')[] = [];
  readonly hellos: HelloMessage[] = [];
  /** What `hello` answers (null: nothing, we spoke first). */
  answer: HelloMessage | null = helloFor('relay');
  readonly endings: ({ code: number; reason: string } | null)[] = [];
  /** Commit at once instead of waiting for the test. */
  autoCommit = true;
  nextPosition = (): number => 0;

  constructor(readonly replica: TestReplica) {}

  hello(msg: HelloMessage): HelloMessage | null {
    this.hellos.push(msg);
    return this.answer;
  }
  applyUpdate(update: Uint8Array): AppliedUpdate {
    Y.applyUpdate(this.replica.doc, update);
    const d = deferred();
    if (this.autoCommit) d.resolve();
    else this.commits.push(d);
    return { durable: d.promise, clients: [] };
  }
  barrier(seq: number): void {
    this.barriers.push(seq);
  }
  awareness(): void {}
  extension(msg: Message): void {
    this.extensions.push(msg);
    if (msg.type === 'ack') throw new ProtocolError('unknown-message-type', 'ack messages are sent by relays, not clients');
  }
  acked(position: number, seq: number): void {
    this.ackedPositions.push(position);
    this.ackedSeqs.push(seq);
  }
  sentStep2(seq: number): void {
    this.sentStep2s.push(seq);
  }
  synced(round: number): void {
    this.rounds.push(round);
  }
  position(): number {
    return this.nextPosition();
  }
  ended(byUs: { code: number; reason: string } | null): void {
    this.endings.push(byUs);
  }
  beforeStep2(): void {}
  messageIn(): void {}
  messageOut(): void {}
  durable(_receivedAt: number, kind: 'sync-step-2' | 'update'): void {
    this.durables.push(kind);
  }
  failing(): void {}
  unexpected(): void {}
}

/** The other end of the link: decodes what the session sends, and waits for messages or the close. */
class Remote {
  readonly got: Message[] = [];
  closed: { code: number; reason: string } | null = null;
  private waiters: (() => void)[] = [];

  constructor(readonly channel: Channel) {
    channel.attach({
      message: (bytes) => {
        this.got.push(decodeMessage(bytes));
        this.wake();
      },
      close: (code, reason) => {
        this.closed = { code, reason };
        this.wake();
      },
      error: () => {},
    });
  }

  send(msg: Message): void {
    this.channel.send(encodeMessage(msg));
  }

  of<T extends Message['type']>(type: T): Extract<Message, { type: T }>[] {
    return this.got.filter((m): m is Extract<Message, { type: T }> => m.type === type);
  }

  /** Resolves once `done()` holds (checked after every message), or fails after 2 s. */
  until(done: () => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out; got ' + JSON.stringify(this.got.map((m) => m.type)))), 2000);
      const check = (): void => {
        if (done()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      check();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

function setup(options: { maxQueuedBytes?: number; numberSent?: boolean; open?: boolean; hello?: HelloMessage; ackReceived?: boolean } = {}) {
  const [a, b] = channelPair();
  const replica = new TestReplica();
  const host = new TestHost(replica);
  const session = new DocSession(a, host, {
    maxQueuedBytes: options.maxQueuedBytes ?? 1 << 20,
    numberSent: options.numberSent ?? false,
    hello: options.hello,
    ackReceived: options.ackReceived,
  });
  const remote = new Remote(b);
  if (options.open !== false) session.open(replica);
  return { session, replica, host, remote };
}

function updateOf(text: string, clientID = 7): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = clientID;
  doc.getText('t').insert(0, text);
  return Y.encodeStateAsUpdate(doc);
}

const EMPTY_UPDATE = Y.encodeStateAsUpdate(new Y.Doc());
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('DocSession', () => {
  it('opens with sync step 1 and answers a step 1 with what the other side lacks', async () => {
    const { replica, remote } = setup();
    replica.doc.getText('t').insert(0, 'hello');
    await remote.until(() => remote.of('sync-step-1').length === 1);
    remote.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    await remote.until(() => remote.of('sync-step-2').length === 1);
    const mirror = new Y.Doc();
    Y.applyUpdate(mirror, remote.of('sync-step-2')[0]!.update);
    expect(mirror.getText('t').toString()).toBe('hello');
  });

  it('coalesces step 1 requests while an answer is unwritten: three requests, two answers', async () => {
    const { remote } = setup();
    for (let i = 0; i < 3; i++) remote.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    await remote.until(() => remote.of('sync-step-2').length === 2);
    remote.send({ type: 'ping', id: 1 });
    await remote.until(() => remote.of('pong').length === 1);
    expect(remote.of('sync-step-2')).toHaveLength(2);
  });

  it('answers a hello with the host hello; a second hello closes 4400', async () => {
    const { remote, host } = setup();
    remote.send(helloFor('client'));
    await remote.until(() => remote.of('hello').length === 1);
    expect(remote.of('hello')[0]!.protocolVersion).toBe(PROTOCOL_VERSION);
    remote.send(helloFor('client'));
    await remote.until(() => remote.closed !== null);
    expect(remote.closed!.code).toBe(CloseCode.BadMessage);
    expect(host.endings).toEqual([{ code: CloseCode.BadMessage, reason: expect.stringContaining('second hello') }]);
  });

  it('closes 4426 on a hello of a protocol version it does not speak', async () => {
    const { remote } = setup();
    remote.send({ type: 'hello', protocolVersion: 99, capabilities: ['ack'] });
    await remote.until(() => remote.closed !== null);
    expect(remote.closed!.code).toBe(4426);
    expect(remote.of('hello')).toHaveLength(0);
  });

  it('acknowledges in message order even when a later update commits first', async () => {
    const { remote, host } = setup();
    host.autoCommit = false;
    remote.send(helloFor('client'));
    remote.send({ type: 'update', update: updateOf('a', 1) });
    remote.send({ type: 'update', update: updateOf('b', 2) });
    await new Promise<void>((r) => {
      const check = (): void => (host.commits.length === 2 ? r() : void setImmediate(check));
      check();
    });
    host.commits[1]!.resolve();
    await tick();
    await tick();
    expect(remote.of('ack')).toHaveLength(0);
    host.commits[0]!.resolve();
    await remote.until(() => remote.of('ack').length > 0);
    expect(remote.of('ack').map((a) => a.seq).at(-1)).toBe(2);
  });

  it('acknowledges a barrier (empty update) only once earlier messages and every pending write are durable', async () => {
    const { remote, host, replica } = setup();
    remote.send(helloFor('client'));
    const settled = deferred();
    replica.settled = settled.promise;
    remote.send({ type: 'update', update: updateOf('a') });
    remote.send({ type: 'update', update: EMPTY_UPDATE });
    await remote.until(() => remote.of('ack').length === 1);
    expect(remote.of('ack')[0]!.seq).toBe(1);
    expect(host.barriers).toEqual([2]);
    await tick();
    await tick();
    expect(remote.of('ack')).toHaveLength(1);
    settled.resolve();
    await remote.until(() => remote.of('ack').length === 2);
    expect(remote.of('ack')[1]!.seq).toBe(2);
  });

  it('queues input while the replica is missing or paused, and handles it in order on resume', async () => {
    const { session, remote, replica } = setup({ open: false });
    remote.send({ type: 'update', update: updateOf('one', 1) });
    remote.send({ type: 'ping', id: 1 });
    await tick();
    await tick();
    replica.paused = true;
    session.open(replica);
    await tick();
    expect(remote.of('pong')).toHaveLength(0);
    expect(replica.doc.getText('t').toString()).toBe('');
    replica.paused = false;
    session.resume();
    expect(replica.doc.getText('t').toString()).toBe('one');
    await remote.until(() => remote.of('pong').length === 1);
  });

  it('fails with slow-consumer (4429) once paused input passes maxQueuedBytes', async () => {
    const { session, remote, replica, host } = setup({ open: false, maxQueuedBytes: 1000 });
    replica.paused = true;
    session.open(replica);
    const big = updateOf('x'.repeat(400));
    remote.send({ type: 'update', update: big });
    remote.send({ type: 'update', update: big });
    await tick();
    await tick();
    expect(session.isClosed).toBe(false);
    remote.send({ type: 'update', update: big });
    await remote.until(() => remote.closed !== null);
    expect(remote.closed!.code).toBe(CloseCode.SlowConsumer);
    expect(host.endings[0]!.code).toBe(CloseCode.SlowConsumer);
    expect(replica.doc.getText('t').toString()).toBe('');
  });

  it('a stock client (no hello) gets no extension message: no ack, no hello', async () => {
    const { remote, replica } = setup();
    remote.send({ type: 'update', update: updateOf('a') });
    remote.send({ type: 'update', update: EMPTY_UPDATE });
    remote.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    await remote.until(() => remote.of('sync-step-2').length === 1);
    await tick();
    await tick();
    expect(replica.doc.getText('t').toString()).toBe('a');
    expect(remote.got.map((m) => m.type).filter((t) => !['sync-step-1', 'sync-step-2'].includes(t))).toEqual([]);
  });

  it('without numberSent an ack goes to the host (which refuses it); with it, acks map to document positions', async () => {
    const plain = setup();
    plain.remote.send({ type: 'ack', seq: 1, stateVector: new Uint8Array([0]) });
    await plain.remote.until(() => plain.remote.closed !== null);
    expect(plain.remote.closed!.code).toBe(CloseCode.BadMessage);

    const peer = setup({ numberSent: true });
    let position = 10;
    peer.host.nextPosition = () => position++;
    peer.session.sendUpdate(updateOf('a'));
    peer.session.sendUpdate(updateOf('b'));
    peer.remote.send({ type: 'ack', seq: 2, stateVector: new Uint8Array([0]) });
    peer.remote.send({ type: 'ping', id: 1 });
    await peer.remote.until(() => peer.remote.of('pong').length === 1);
    expect(peer.host.ackedPositions).toEqual([11]);
  });

  it('the dialling side of a peer link says hello first, acks before the answer, and does not answer the answer', async () => {
    const { remote, host } = setup({ numberSent: true, hello: helloFor('peer', ['relay-id:r1']) });
    host.answer = null;
    await remote.until(() => remote.got.length >= 2);
    expect(remote.got.slice(0, 2).map((m) => m.type)).toEqual(['hello', 'sync-step-1']);
    // The peer relay's own messages may come before its hello answer: they are acknowledged.
    remote.send({ type: 'update', update: updateOf('a') });
    await remote.until(() => remote.of('ack').length === 1);
    remote.send(helloFor('relay-to-peer', ['relay-id:r0']));
    remote.send({ type: 'ping', id: 1 });
    await remote.until(() => remote.of('pong').length === 1);
    expect(host.hellos).toHaveLength(1);
    expect(remote.of('hello')).toHaveLength(1);
    // Its hello still counts once: a second one closes.
    remote.send(helloFor('relay-to-peer'));
    await remote.until(() => remote.closed !== null);
    expect(remote.closed!.code).toBe(CloseCode.BadMessage);
  });

  it('the dialling side closes 4426 on an answer of a protocol version it does not speak', async () => {
    const { remote, host } = setup({ numberSent: true, hello: helloFor('peer') });
    host.answer = null;
    remote.send({ type: 'hello', protocolVersion: 99, capabilities: ['ack'] });
    await remote.until(() => remote.closed !== null);
    expect(remote.closed!.code).toBe(4426);
  });

  it('answers a step 1 from a replica that keeps its state in pieces: the pieces as numbered updates, the step 2 last', async () => {
    const { replica, remote, host } = setup({ numberSent: true });
    const pieces = [updateOf('a', 1), updateOf('b', 2), updateOf('c', 3), updateOf('d', 4)];
    const asked: Uint8Array[] = [];
    Object.assign(replica, {
      stateUpdates: (stateVector: Uint8Array): readonly Uint8Array[] => {
        asked.push(stateVector);
        return pieces;
      },
    });
    remote.send(helloFor('peer'));
    remote.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    await remote.until(() => remote.of('sync-step-2').length === 1);
    const doc = remote.got.filter((m) => m.type === 'update' || m.type === 'sync-step-2');
    expect(doc.map((m) => m.type)).toEqual(['update', 'update', 'update', 'sync-step-2']);
    expect(doc.map((m) => (m as { update: Uint8Array }).update)).toEqual(pieces);
    // Numbered like any update: the step 2 is the fourth message the other side acks.
    expect(host.sentStep2s).toEqual([4]);
    expect(asked).toHaveLength(1);
  });

  it('tells the host the number of its sync step 2, the seq of acks, and the kind of each durable message', async () => {
    const { remote, host } = setup({ numberSent: true });
    remote.send(helloFor('peer'));
    remote.send({ type: 'update', update: updateOf('a', 1) });
    remote.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    remote.send({ type: 'sync-step-2', update: updateOf('b', 2) });
    remote.send({ type: 'sync-step-2', update: EMPTY_UPDATE });
    await remote.until(() => remote.of('sync-step-2').length === 1 && remote.of('ack').some((a) => a.seq === 3));
    expect(host.sentStep2s).toEqual([1]);
    expect(host.durables).toEqual(['update', 'sync-step-2', 'sync-step-2']);
    remote.send({ type: 'ack', seq: 1, stateVector: new Uint8Array([0]) });
    remote.send({ type: 'ping', id: 1 });
    await remote.until(() => remote.of('pong').length === 1);
    expect(host.ackedSeqs).toEqual([1]);
  });

  it('a CapsyncError thrown by a hook closes with its code; sends after the close are dropped', async () => {
    const { remote, session, host } = setup();
    session.fail(new CapsyncError('forbidden', 'no'));
    await remote.until(() => remote.closed !== null);
    expect(remote.closed!.code).toBe(CloseCode.Forbidden);
    expect(session.sendUpdate(updateOf('late'))).toBe(false);
    expect(host.endings).toHaveLength(1);
  });

  it('on a session of a multiplexed socket it takes the socket hello (Channel.hello) unanswered, before queued input; a hello on the session is a second one', async () => {
    const [a, b] = channelPair();
    // The memory channel, plus the hello its socket said (as a SessionChannel carries it).
    const channel: Channel = {
      send: (bytes, onWritten) => a.send(bytes, onWritten),
      get bufferedAmount() {
        return a.bufferedAmount;
      },
      close: (code, reason) => a.close(code, reason),
      terminate: () => a.terminate(),
      attach: (handler) => a.attach(handler),
      hello: helloFor('client'),
    };
    const replica = new TestReplica();
    const session = new DocSession(channel, new TestHost(replica), { maxQueuedBytes: 1 << 20, numberSent: false });
    const remote = new Remote(b);
    remote.send({ type: 'update', update: updateOf('queued') }); // before open: queued, acked once the hello is taken
    await tick();
    session.open(replica);
    await remote.until(() => remote.of('ack').length === 1);
    expect(session.extended).toBe(true);
    expect(remote.of('hello')).toEqual([]);
    remote.send(helloFor('client'));
    await remote.until(() => remote.closed !== null);
    expect(remote.closed!.code).toBe(CloseCode.BadMessage);
  });
});

/** A client's session: it said hello through its dialer, numbers what it sends, acknowledges nothing. */
function clientSetup(options: { open?: boolean } = {}) {
  return setup({ numberSent: true, ackReceived: false, ...options });
}

describe('DocSession, client role (numberSent, ackReceived: false)', () => {
  it('numbers the step 2 answer, its updates and a barrier from 1; the relay\'s acks name them; it acknowledges nothing', async () => {
    const { remote, host, session, replica } = clientSetup();
    host.answer = null;
    replica.doc.getText('t').insert(0, 'local');
    remote.send(helloFor('relay'));
    remote.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    remote.send({ type: 'sync-step-2', update: updateOf('remote') });
    remote.send({ type: 'update', update: updateOf('more', 9) });
    remote.send({ type: 'update', update: EMPTY_UPDATE });
    await remote.until(() => remote.of('sync-step-2').length === 1);
    expect(session.sendNumbered(updateOf('x', 3))).toBe(2);
    expect(session.sendNumbered(EMPTY_UPDATE)).toBe(3);
    expect(host.sentStep2s).toEqual([1]);
    remote.send({ type: 'ack', seq: 3, stateVector: new Uint8Array([0]) });
    remote.send({ type: 'ping', id: 1 });
    await remote.until(() => remote.of('pong').length === 1);
    await tick();
    expect(host.ackedSeqs).toEqual([3]);
    expect(host.hellos).toHaveLength(1);
    // No ack (a relay refuses one from a client) and no hello answer: we spoke first.
    expect(remote.of('ack')).toEqual([]);
    expect(remote.of('hello')).toEqual([]);
    expect(replica.doc.getText('t').length).toBeGreaterThan('local'.length);
  });

  it('requestSync: one step 1 in flight; asked meanwhile, the next goes out with the state the answer made', async () => {
    const { remote, host, session } = clientSetup();
    await remote.until(() => remote.of('sync-step-1').length === 1);
    // Round 1 (open's step 1) is unanswered: asking twice owes one more step 1, for round 2.
    expect(session.requestSync()).toBe(2);
    expect(session.requestSync()).toBe(2);
    remote.send({ type: 'ping', id: 1 });
    await remote.until(() => remote.of('pong').length === 1);
    expect(remote.of('sync-step-1')).toHaveLength(1);
    remote.send({ type: 'sync-step-2', update: updateOf('a') });
    await remote.until(() => remote.of('sync-step-1').length === 2);
    expect(host.rounds).toEqual([1]);
    // The owed step 1 carries the state vector after the answer was applied.
    const sv = Y.decodeStateVector(remote.of('sync-step-1')[1]!.stateVector);
    expect(sv.get(7)).toBe(1);
    // An empty answer completes its round too.
    remote.send({ type: 'sync-step-2', update: EMPTY_UPDATE });
    remote.send({ type: 'ping', id: 2 });
    await remote.until(() => remote.of('pong').length === 2);
    expect(host.rounds).toEqual([1, 2]);
    // Nothing in flight: a request goes out at once.
    expect(session.requestSync()).toBe(3);
    await remote.until(() => remote.of('sync-step-1').length === 3);
  });

  it('a client session and a relay session over a memory pair converge; the relay acks, the client acks nothing', async () => {
    const [c, r] = channelPair();
    const clientReplica = new TestReplica();
    const clientHost = new TestHost(clientReplica);
    clientHost.answer = null;
    const relayReplica = new TestReplica();
    const relayHost = new TestHost(relayReplica);
    clientReplica.doc.getText('t').insert(0, 'offline edit');
    relayReplica.doc.getMap('m').set('k', 'stored');
    const client = new DocSession(c, clientHost, { maxQueuedBytes: 1 << 20, numberSent: true, ackReceived: false, hello: helloFor('client') });
    const relay = new DocSession(r, relayHost, { maxQueuedBytes: 1 << 20, numberSent: false });
    relay.open(relayReplica);
    client.open(clientReplica);
    const round = client.requestSync();
    const deadline = Date.now() + 2000;
    while (!(clientHost.rounds.includes(round) && clientHost.ackedSeqs.length > 0) && Date.now() < deadline) await tick();
    expect(clientReplica.doc.getMap('m').get('k')).toBe('stored');
    expect(relayReplica.doc.getText('t').toString()).toBe('offline edit');
    // The client's sync step 2 (its message 1) was acknowledged; the relay heard no ack (its host would close on one).
    expect(clientHost.sentStep2s).toEqual([1]);
    expect(clientHost.ackedSeqs.at(-1)).toBe(1);
    expect(relayHost.extensions.filter((m) => m.type === 'ack')).toEqual([]);
    expect(relayHost.hellos).toHaveLength(1);
    expect(clientHost.hellos).toHaveLength(1);
    expect(client.isClosed || relay.isClosed).toBe(false);
  });

  it('requestSync asks nothing before open or after the close (0: the next session\'s first round answers)', async () => {
    const { remote, session, replica } = clientSetup({ open: false });
    expect(session.requestSync()).toBe(0);
    session.open(replica);
    await remote.until(() => remote.of('sync-step-1').length === 1);
    session.close(1000, 'bye');
    expect(session.requestSync()).toBe(0);
    expect(session.sendNumbered(updateOf('late'))).toBe(-1);
  });
});
