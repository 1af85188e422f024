import * as Y from 'yjs';
import { CapsyncError, ProtocolError } from '../errors.js';
import { closeCodeFor, closeReasonFor } from '../protocol/close-codes.js';
import type { HelloMessage, Message } from '../protocol/message-types.js';
import { decodeMessage, encodeMessage } from '../protocol/messages.js';
import type { Channel, ChannelHandler } from './channel.js';
import { CoalescedReply } from './coalesced-reply.js';
import { checkProtocolVersion } from './hello.js';
import { InputQueue } from './input-queue.js';
import { ReceivedUpdates } from './received-updates.js';
import { SentLog } from './sent-log.js';
import { StateAnswers, type DocMessage } from './state-answer.js';
import type { SessionHooks, SessionOptions, SessionReplica } from './session-types.js';

/** How long a slow consumer's close handshake may take before the link is dropped. */
const SLOW_CLOSE_MS = 1000;

/**
 * One document over one Channel: the relay serving a client, either end of a link between two
 * relays, a client's link to its relay. It owns what every such link does the same way:
 *
 * - Hello: the other side speaks first; its protocol version is checked (4426 when it is not
 *   spoken here), a second hello closes the session (4400), and the host's hello is the
 *   answer. A side that never says hello (a stock y-websocket client) gets no extension
 *   message from the session: no ack, no hello. The side that dialled a peer relay speaks
 *   first instead (`SessionOptions.hello`), and the peer's hello answers it. On a session of
 *   a multiplexed socket the hello was said once on the socket (Channel.hello): it is taken
 *   when the replica opens, unanswered.
 * - Sync: once the replica is open the session sends sync step 1 and the awareness state.
 *   A step 1 received is answered (StateAnswers) with a step 2, coalesced (CoalescedReply): one full-state
 *   encoding in flight at a time, and none while the channel has no room in its budget.
 *   So is query-awareness. Our step 1s count sync rounds: `requestSync` asks for a fresh one
 *   (at most one step 1 unanswered at a time) and the host hears `synced(round)` for each
 *   step 2 received.
 * - Numbering and acks: received document messages (step 2, update) are numbered from 1;
 *   each is acknowledged once it and every earlier one are durable (ReceivedUpdates),
 *   to a side that speaks the extensions (it said hello, or we did first). An empty update is a barrier: acknowledged once every earlier
 *   message and every pending write of the replica are durable. With `numberSent`, the
 *   document messages we send are numbered too and the other side's acks map to positions.
 *   A client (`ackReceived: false`) numbers what it sends and acknowledges nothing.
 * - Input arriving while the replica is missing (loading) or paused is queued in order, up to
 *   `maxQueuedBytes` (then the session fails with slow-consumer), and handled on `resume`.
 * - Failure: a CapsyncError from decoding or a hook closes the channel with the error's
 *   close code and reason; a slow consumer is dropped 1 s later if its close does not finish.
 *   What comes next is the host's (a dialled peer link reconnects and resyncs).
 *
 * Role-specific reactions (validation, permission, fenced writes, metrics) are the host's
 * (SessionHooks). One session per channel: nothing (numbers, acks, queue) outlives it.
 */
// Over ~400 lines (2026-12-08, 423): the one session of the protocol (hello, sync rounds,
// numbering, barriers, queued input, what waits for a state answer) for every kind of link,
// most of it doc comments; the state answer (state-answer.ts) and the received messages' acks
// (received-updates.ts) are out already.
export class DocSession {
  private replica: SessionReplica | null = null;
  /**
   * Input held while the replica is missing or paused; this and the ack machinery below are
   * made on first use: a client's session never queues nor acknowledges, and a relay serving
   * 1,000 documents opened at once makes 1,000 sessions.
   */
  private queue: InputQueue | null = null;
  private closed = false;
  /** The other side speaks the extensions (it said hello, or we did first): it gets acks and the host's extension messages. */
  private helloed = false;
  /** The other side's hello arrived (one per session). */
  private heardHello = false;
  /** The document messages received: numbered, applied, acknowledged (made at the first). */
  private receivedUpdates: ReceivedUpdates | null = null;
  private readonly sent: SentLog | null;
  private readonly step2Replies: CoalescedReply<Uint8Array>;
  /** Our sync step 1s sent, and the other side's step 2s received: the sync rounds (requestSync). */
  private step1Sent = 0;
  private step2Received = 0;
  /** A round was asked for while a step 1 was unanswered: sent once that answer arrives (requestSync). */
  private step1Owed = false;
  /** Our first step 1 waits for the replica to take input (see `open`). */
  private step1WhenResumed = false;
  private readonly acknowledges: boolean;
  /** Our answers to the other side's step 1s, made at the first (StateAnswers). */
  private answers: StateAnswers | null = null;
  /** Made on the first query-awareness: most links never send one (memory per idle link). */
  private awarenessReplies: CoalescedReply<null> | null = null;

  constructor(
    private readonly channel: Channel,
    private readonly hooks: SessionHooks,
    private readonly options: SessionOptions,
  ) {
    this.sent = options.numberSent ? new SentLog() : null;
    this.acknowledges = options.ackReceived !== false;
    this.step2Replies = new CoalescedReply(this.canAnswer, (stateVector, written) => this.answerStep1(stateVector, written), options.room);
    const handler: ChannelHandler = {
      message: (frame) => this.receive(frame),
      // A transport violation (text frame, size limit) or a consumer given up on.
      error: (err) => this.fail(err),
      close: () => this.channelClosed(),
    };
    channel.attach(handler);
  }

  /** True once the other side said hello (a capsync client or relay, not a stock y-websocket client). */
  get extended(): boolean {
    return this.helloed;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The replica is ready: sends our hello (if we speak first), sync step 1 and our awareness, then handles queued input. */
  open(replica: SessionReplica): void {
    if (this.closed) return;
    this.replica = replica;
    if (this.options.hello) {
      this.send(this.options.hello);
      this.helloed = true;
    }
    // A multiplexed socket said hello once for all its sessions: taken here, before any input.
    const socketHello = this.channel.hello;
    if (socketHello) {
      try {
        this.takeHello(socketHello);
      } catch (err) {
        return this.failOn(err);
      }
    }
    // From a paused replica (a relay reloading the document from storage after a failed
    // append) the step 1 would carry the state vector of the document about to be replaced:
    // the other side would never send what the reload dropped. It goes once input resumes.
    if (replica.paused) this.step1WhenResumed = true;
    else this.sendStep1();
    const awareness = replica.awareness.encode();
    if (awareness) this.send({ type: 'awareness', update: awareness });
    this.resume();
  }

  /** The replica may take input again: handles what was queued, then coalesced answers. */
  resume(): void {
    if (this.step1WhenResumed && this.replica && !this.replica.paused && !this.closed) {
      this.step1WhenResumed = false;
      this.sendStep1();
    }
    while (this.queue !== null && this.queue.length > 0 && this.replica && !this.replica.paused && !this.closed) this.handle(this.queue.shift()!);
    this.step2Replies.retry();
    this.awarenessReplies?.retry();
  }

  // ---- receiving ----

  private receive(frame: Uint8Array): void {
    if (this.closed) return;
    if (!this.replica || this.replica.paused || (this.queue !== null && this.queue.length > 0)) {
      if (!(this.queue ??= new InputQueue(this.options.maxQueuedBytes)).push(frame)) this.fail(new CapsyncError('slow-consumer', 'too much input while the document loads'));
      return;
    }
    this.handle(frame);
  }

  /** The channel closed (the other side, or the transport). */
  private channelClosed(): void {
    if (this.closed) return;
    this.shutdown();
    this.hooks.ended(null);
  }

  private readonly canAnswer = (): boolean => this.replica !== null && !this.replica.paused && !this.closed;

  private handle(frame: Uint8Array): void {
    try {
      const msg = decodeMessage(frame);
      this.hooks.messageIn(msg.type);
      this.dispatch(msg);
    } catch (err) {
      this.failOn(err);
    }
  }

  /** A message or hook failed: a CapsyncError closes with its code, anything else is a bug (internal). */
  private failOn(err: unknown): void {
    if (err instanceof CapsyncError) return this.fail(err);
    this.hooks.unexpected(err, 'message');
    this.fail(new CapsyncError('internal', 'internal error'));
  }

  /** Takes the other side's hello (one per session: what it declares must not change mid-link); returns our answer. */
  private takeHello(msg: HelloMessage): HelloMessage | null {
    // One per link: what it declares (owner key, client ids) must not change mid-link.
    if (this.heardHello) throw new ProtocolError('bad-message', 'a second hello on one connection');
    checkProtocolVersion(msg.protocolVersion);
    const answer = this.hooks.hello(msg);
    this.heardHello = true;
    this.helloed = true;
    return answer;
  }

  private dispatch(msg: Message): void {
    switch (msg.type) {
      case 'sync-step-1':
        try {
          // Checked now, as the answer may be computed later (coalesced).
          Y.decodeStateVector(msg.stateVector);
        } catch (err) {
          throw new ProtocolError('bad-message', 'state vector does not decode', { cause: err });
        }
        this.step2Replies.request(msg.stateVector);
        return;
      case 'sync-step-2':
        this.received().receive(msg.update, msg.type);
        this.roundAnswered();
        return;
      case 'update':
        this.received().receive(msg.update, msg.type);
        return;
      case 'awareness':
        this.hooks.awareness(msg.update);
        return;
      case 'query-awareness':
        (this.awarenessReplies ??= new CoalescedReply(this.canAnswer, (_, written) => {
          const update = this.replica!.awareness.encode();
          return update !== null && this.send({ type: 'awareness', update }, written);
        }, this.options.room)).request(null);
        return;
      case 'hello': {
        const answer = this.takeHello(msg);
        if (answer) this.send(answer);
        return;
      }
      case 'ping':
        this.send({ type: 'pong', id: msg.id });
        return;
      case 'ack':
        if (!this.sent) break;
        // The other side committed what we sent it up to this message.
        this.hooks.acked(this.sent.acked(msg.seq), msg.seq);
        return;
      default:
        break;
    }
    this.hooks.extension(msg);
  }

  private received(): ReceivedUpdates {
    const session = this;
    return (this.receivedUpdates ??= new ReceivedUpdates({
      get replica() {
        return session.replica!;
      },
      hooks: this.hooks,
      acknowledging: () => this.helloed && this.acknowledges && !this.closed,
      sendAck: (seq, stateVector) => void this.send({ type: 'ack', seq, stateVector }),
      ackDoc: () => (this.closed ? null : (this.replica?.doc ?? null)),
      fail: (err) => this.fail(err),
    }));
  }

  // ---- sync rounds ----

  /**
   * Asks for a fresh sync round: resolves, through `synced(round)`, once this replica holds
   * everything the other side had when this was called. Returns that round's number, or 0
   * when the session is closed or not open yet (the next session's first round answers it).
   *
   * At most one step 1 is unanswered at a time: its answer is the full state this replica
   * lacks, so a second step 1 sent before it carries the same (old) state vector and would
   * make the other side encode and send that state twice (a 10 MB document opened and
   * awaited at once cost twice its sync); the other side also coalesces step 1s that arrive
   * while an answer is in flight (CoalescedReply), so the rounds would not count true. Asked
   * meanwhile, the next step 1 goes out when the one in flight is answered.
   */
  requestSync(): number {
    if (this.closed || !this.replica) return 0;
    if (this.step1WhenResumed) return this.step1Sent + 1;
    if (this.step1Sent > this.step2Received) {
      this.step1Owed = true;
      return this.step1Sent + 1;
    }
    this.sendStep1();
    return this.step1Sent;
  }

  private sendStep1(): void {
    if (this.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(this.replica!.doc) })) this.step1Sent++;
  }

  /** A step 2 was handled: the round it answers is complete; an owed step 1 starts the next (with the state it made). */
  private roundAnswered(): void {
    if (this.closed) return;
    const round = ++this.step2Received;
    if (this.step1Owed && round === this.step1Sent) {
      this.step1Owed = false;
      this.sendStep1();
    }
    this.hooks.synced?.(round);
  }

  private answerStep1(stateVector: Uint8Array, written: () => void): boolean {
    const replica = this.replica!;
    let updates: readonly Uint8Array[];
    try {
      updates = replica.stateUpdates ? replica.stateUpdates(stateVector) : [replica.encodeState(stateVector)];
    } catch (err) {
      // Possibly answered later, from a write callback: fail here rather than throw.
      this.fail(new ProtocolError('bad-message', 'state vector does not decode', { cause: err }));
      return false;
    }
    if (updates.length > 0) return this.stateAnswers().answer(updates, written);
    // Nothing here at all: the other side lacks nothing and waits for no answer (see
    // stateUpdates; a client's fresh replica, which then costs no StateAnswers).
    this.hooks.sentStep2?.(0);
    this.answers?.answeredNothing();
    return false;
  }

  private stateAnswers(): StateAnswers {
    const session = this;
    return (this.answers ??= new StateAnswers(
      {
        get replica() {
          return session.replica!;
        },
        position: () => (this.sent ? this.hooks.position() : 0),
        sendDoc: (msg, onWritten, at) => this.sendDoc(msg, onWritten, at),
      },
      this.hooks,
      this.options.room,
    ));
  }

  // ---- sending ----

  /**
   * A broadcast update (the fan-out path: one encoding, one send, nothing allocated besides,
   * unless a state answer is going out: then it waits behind it, see StateAnswers).
   *
   * Not sent at all while a step 1 of the other side waits for its answer (its reader's address
   * over its share of the unsent budget, the document paused, or the previous answer still in
   * the socket): the update is in the document already, so the answer, made later of the
   * document as it is then, carries it. Sent, each broadcast to a reader parked for room added
   * to what its address had unsent, until the relay closed its socket (a 700 KiB paste into each
   * of 12 documents parked on a 2 MiB share: adversarial/mux-room-wake, pasted). Only where nothing sent is numbered (a relay's client): the
   * acks of a peer relay map numbered messages to positions, and its links never wait for room.
   * What says the other side has content by now (a fenced write's reply) waits for that answer
   * too (sendAfterContent).
   */
  sendUpdate(update: Uint8Array): boolean {
    if (!this.sent && this.step2Replies.waiting && !this.closed) return true;
    if (this.answers?.holdBroadcast(update)) return true;
    return this.sendDoc({ type: 'update', update }) >= 0;
  }

  /**
   * A document update of this side (a client's local edits; an empty one is a barrier): its
   * number when `numberSent` (the other side's acks count it; 0 unnumbered), or -1 when the
   * session is closed.
   */
  sendNumbered(update: Uint8Array): number {
    this.answers?.rush();
    return this.sendDoc({ type: 'update', update });
  }

  /**
   * A message that says the other side holds document content by now (a fenced write's
   * `cp-reply`: the value is in its replica when `set` resolves): sent after every broadcast
   * made before it, which may wait behind a state answer or be left to the answer of a step 1
   * still waiting (see sendUpdate). False when the session is closed.
   */
  sendAfterContent(msg: Message): boolean {
    if (this.closed) return false;
    const waiting = !this.sent && this.step2Replies.waiting;
    if ((waiting || this.answers) && this.stateAnswers().afterContent(waiting, () => void this.send(msg))) return true;
    return this.send(msg);
  }

  sendAwareness(update: Uint8Array): boolean {
    return this.send({ type: 'awareness', update });
  }

  /**
   * A message carrying document content; numbered when `numberSent` (the other side's acks
   * count them), with the document position an ack of it reports (`at`, default the position
   * now). Returns its number (0 when not numbered), or -1 when nothing was sent.
   */
  private sendDoc(msg: DocMessage, onWritten?: () => void, at?: number): number {
    if (!this.send(msg, onWritten)) return -1;
    return this.sent ? this.sent.record(at ?? this.hooks.position()) : 0;
  }

  /**
   * Sends one message through the channel (and its accounting). True when sent (then
   * `onWritten` runs once it was written out), false when the session is closed.
   */
  send(msg: Message, onWritten?: () => void): boolean {
    if (this.closed) return false;
    const bytes = encodeMessage(msg);
    this.hooks.messageOut(msg.type, bytes.byteLength);
    this.channel.send(bytes, onWritten);
    return true;
  }

  // ---- closing ----

  /** Closes the session because of `err`, with the matching close code. */
  fail(err: CapsyncError): void {
    if (this.closed) return;
    this.hooks.failing(err);
    this.close(closeCodeFor(err.code), closeReasonFor(err.code, err.message));
    if (err.code === 'slow-consumer') {
      // Its buffer is full, so the close frame may never get through: do not wait for it.
      const timer = setTimeout(() => this.channel.terminate(), SLOW_CLOSE_MS) as { unref?: () => void };
      timer.unref?.();
    }
  }

  /** Closes with `code` and `reason` (the host hears `ended` with them). */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.shutdown();
    this.channel.close(code, reason);
    this.hooks.ended({ code, reason });
  }

  private shutdown(): void {
    this.closed = true;
    this.answers?.stop();
    this.queue?.clear();
  }
}
