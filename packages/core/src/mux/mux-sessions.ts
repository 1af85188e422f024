import { ProtocolError } from '../errors.js';
import type { HelloMessage, Message, SessionOpenMessage } from '../protocol/message-types.js';
import { MessageType } from '../protocol/message-types.js';
import { CapsyncKind, decodeMessage, encodeMessage } from '../protocol/messages.js';
import { CONTROL_SID, MAX_SID, encodeMuxFrame, peekSid, readBatch } from '../protocol/mux-frame.js';
import type { ChunkAssembler } from './chunk-assembler.js';
import { SessionChannel, type SessionTransport } from './session-channel.js';

/** The socket a MuxSessions sends through (a Channel, or the relay's accounted socket). */
export interface MuxSocket {
  send(frame: Uint8Array, onWritten?: () => void): void;
  readonly bufferedAmount: number;
}

/** What the owner of a multiplexed socket decides (the relay's MuxConnection, a client's socket). */
export interface MuxHandler {
  /**
   * The other side asks for session `msg.sid` (a new sid of its parity, already checked).
   * Answer before returning: `accept` it or `refuse` it. May throw a CapsyncError, which breaks
   * the socket (the owner closes it).
   */
  open(msg: SessionOpenMessage): void;
  /**
   * Any other message of the control session: hello, ping, pong, and `session-opened` for a
   * session this side opened (still live). May throw a CapsyncError, which breaks the socket.
   */
  control(msg: Message): void;
  /**
   * A chunk of `bytes` (its piece) was taken off the socket, for a live session or a closed one
   * (dropped): what a receiver that credits chunks (MUX_FLOW_CAPABILITY) credits back.
   */
  chunkTaken?(bytes: number): void;
}

/**
 * The sessions of one multiplexed socket (see protocol/mux-frame.ts), on either side: the sid
 * table, the routing of received frames, and the session-open / session-close exchange. It does
 * not own the socket: its owner feeds it `receive` for every frame and `socketClosed` once, and
 * closes the socket when `receive` throws.
 *
 * Rules it enforces, so both sides agree on them:
 * - The dialling side opens odd sids, the accepting side even ones; each side's sids increase
 *   and are never reused. So a frame for a sid at or below the highest opened of its parity
 *   and not live belongs to a session closed (or refused) moments ago, and is dropped; a frame
 *   for a sid above it, or a malformed sid, breaks the socket (ProtocolError 'bad-message').
 * - A malformed message on the control session breaks the socket; inside a session it is the
 *   session's to handle (its DocSession closes it alone).
 * - `session-close` is sent once by the side that ends a session and is not answered; one for
 *   a session already closed (the two closes crossed) is ignored.
 * - With a ChunkAssembler, a session's `chunk` frames are put together and the session gets the
 *   whole message (the assembler's bounds, which the relay sets per socket, break the socket).
 *   Without one, a chunk reaches the session as it is, and its codec refuses it.
 * - A batch of frames (MUX_BATCH_CAPABILITY) is taken apart and its frames handled in order, as
 *   if each had come alone; once one of them closed the socket, the rest are dropped.
 */
export class MuxSessions implements SessionTransport {
  private readonly live = new Map<number, SessionChannel>();
  private highestOurs = 0;
  private highestTheirs = 0;
  private nextOurs: number;
  /** The sid the handler is deciding on (during `MuxHandler.open`), else 0. */
  private deciding = 0;
  /** Null unless this side takes chunks. */
  private readonly chunks: ChunkAssembler | null;

  /** socketClosed ran: frames still to handle (the rest of a batch) are dropped. */
  private socketEnded = false;

  constructor(
    private readonly socket: MuxSocket,
    /** This side dialled the socket (it opens odd sids). */
    private readonly dialled: boolean,
    private readonly handler: MuxHandler,
    /** Puts chunked messages together (see the class comment); null: chunks are not taken. */
    chunks: ChunkAssembler | null = null,
  ) {
    this.chunks = chunks;
    this.nextOurs = dialled ? 1 : 2;
  }

  /** Live sessions (opened by either side, not closed). */
  get size(): number {
    return this.live.size;
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  /**
   * Handles one message received on the socket: a frame, or a batch of them (mux-frame.ts),
   * each handled as if it had come alone. Throws a CapsyncError when the socket must close.
   */
  receive(message: Uint8Array): void {
    const frames = readBatch(message);
    if (!frames) return this.receiveFrame(message);
    for (const frame of frames) {
      // A frame of the batch closed the socket: the rest is not for anyone any more.
      if (this.socketEnded) return;
      this.receiveFrame(frame);
    }
  }

  private receiveFrame(frame: Uint8Array): void {
    // peekSid, not decodeMuxFrame: no decoder object per frame (thousands when many documents open at once).
    const { sid, bodyStart } = peekSid(frame);
    const body = frame.subarray(bodyStart);
    if (sid === CONTROL_SID) return this.control(decodeMessage(body));
    // Every chunk counts, a dropped one too: the sender's window must not leak with a session.
    if (body[0] === MessageType.Capsync && body[1] === CapsyncKind.Chunk) this.handler.chunkTaken?.(Math.max(0, body.byteLength - 3));
    const session = this.live.get(sid);
    if (session) {
      const message = this.chunks ? this.chunks.push(sid, body) : body;
      if (message) session.received(message);
      return;
    }
    if (sid > this.highestOf(sid)) throw new ProtocolError('bad-message', `frame for session ${sid}, which was never opened`);
    // Closed or refused: the other side sent this before it heard. Dropped.
  }

  /** Opens a session of this side: sends `session-open`; frames may follow at once. */
  open(request: Omit<SessionOpenMessage, 'type' | 'sid'>, hello?: HelloMessage): SessionChannel {
    const sid = this.nextOurs;
    if (sid > MAX_SID) throw new ProtocolError('bad-message', 'this socket has used up its session ids; open a new socket');
    this.nextOurs += 2;
    this.highestOurs = sid;
    const channel = new SessionChannel(sid, this, hello);
    this.live.set(sid, channel);
    this.sendControl({ type: 'session-open', sid, ...request });
    return channel;
  }

  /** Accepts the other side's open being decided (see MuxHandler.open) with the channel that serves it. */
  accept(channel: SessionChannel): void {
    if (channel.sid !== this.deciding) throw new Error(`session ${channel.sid} is not being opened`);
    this.deciding = 0;
    this.live.set(channel.sid, channel);
  }

  /** Refuses the other side's open being decided: `session-close` with a plain connection's code. */
  refuse(sid: number, code: number, reason: string): void {
    if (sid !== this.deciding) throw new Error(`session ${sid} is not being opened`);
    this.deciding = 0;
    this.sendControl({ type: 'session-close', sid, code, reason });
  }

  /** Sends one message on the control session. */
  sendControl(msg: Message, onWritten?: () => void): void {
    this.socket.send(encodeMuxFrame(CONTROL_SID, encodeMessage(msg)), onWritten);
  }

  /** The socket closed: every live session ends with the socket's code and reason. */
  socketClosed(code: number, reason: string): void {
    this.socketEnded = true;
    const sessions = [...this.live.values()];
    this.live.clear();
    this.chunks?.clear();
    for (const s of sessions) s.transportClosed(code, reason);
  }

  // ---- SessionTransport (what each SessionChannel sends through) ----

  sendFrame(frame: Uint8Array, onWritten?: () => void): void {
    this.socket.send(frame, onWritten);
  }

  sessionClosed(sid: number, code: number, reason: string): void {
    this.chunks?.forget(sid);
    if (this.live.delete(sid)) this.sendControl({ type: 'session-close', sid, code, reason });
  }

  // ---- receiving ----


  private control(msg: Message): void {
    switch (msg.type) {
      case 'session-open':
        return this.opening(msg);
      case 'session-close': {
        const session = this.live.get(msg.sid);
        if (session) {
          this.live.delete(msg.sid);
          this.chunks?.forget(msg.sid);
          session.transportClosed(msg.code, msg.reason);
        } else if (msg.sid === CONTROL_SID || msg.sid > this.highestOf(msg.sid)) {
          throw new ProtocolError('bad-message', `close of session ${msg.sid}, which was never opened`);
        }
        return;
      }
      case 'session-opened':
        if (msg.sid === CONTROL_SID || !this.ours(msg.sid) || msg.sid > this.highestOurs) throw new ProtocolError('bad-message', `session-opened for session ${msg.sid}, which this side did not open`);
        if (this.live.has(msg.sid)) this.handler.control(msg);
        return;
      default:
        this.handler.control(msg);
    }
  }

  private opening(msg: SessionOpenMessage): void {
    if (msg.sid === CONTROL_SID || this.ours(msg.sid)) throw new ProtocolError('bad-message', `session ${msg.sid} is not for the ${this.dialled ? 'accepting' : 'dialling'} side to open (odd sids: the side that dialled)`);
    if (msg.sid > MAX_SID) throw new ProtocolError('bad-message', `session id ${msg.sid} is over ${MAX_SID}`);
    if (msg.sid <= this.highestTheirs) throw new ProtocolError('bad-message', `session ${msg.sid} was opened before (sids increase and are never reused)`);
    this.highestTheirs = msg.sid;
    this.deciding = msg.sid;
    try {
      this.handler.open(msg);
    } catch (err) {
      this.deciding = 0; // the socket is closing
      throw err;
    }
    if (this.deciding !== 0) {
      this.deciding = 0;
      throw new Error(`session ${msg.sid} was neither accepted nor refused`); // a bug of the handler: the socket closes (internal)
    }
  }

  private ours(sid: number): boolean {
    return sid % 2 === (this.dialled ? 1 : 0);
  }

  private highestOf(sid: number): number {
    return this.ours(sid) ? this.highestOurs : this.highestTheirs;
  }
}
