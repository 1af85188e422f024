import * as Y from 'yjs';
import type { Message } from '../protocol/message-types.js';
import { isEmptyUpdate } from '../yjs/validate-update.js';
import { InTurn, STATE_PIECES_AHEAD, type PieceRoom } from './send-in-turn.js';
import type { SessionHooks, SessionReplica } from './session-types.js';

/** A document message of the session: `update` or `sync-step-2`. */
export type DocMessage = Extract<Message, { type: 'update' | 'sync-step-2' }>;

/** What a state answer needs of the session it answers on (DocSession). */
export interface StateAnswerHost {
  /** The open replica the answer is made of. */
  readonly replica: SessionReplica;
  /** The document position a numbered message sent now stands for; 0 when the session numbers nothing. */
  position(): number;
  /**
   * Sends a document message (numbered when the session numbers what it sends, standing for
   * position `at`, default now): its number, 0 unnumbered, or -1 when the session is closed.
   */
  sendDoc(msg: DocMessage, onWritten?: () => void, at?: number): number;
}

/**
 * The answers of one session to the other side's sync step 1s (coalesced by the session's
 * CoalescedReply: one at a time), and what a broadcast made while one goes out does.
 *
 * An answer is the state the other side lacks, sent in pieces (InTurn): the pieces but the
 * last as updates, then the step 2 (whoever takes it as the end of the sync has all the state
 * by then). A broadcast update made meanwhile must not reach the other side before the state
 * it builds on: it waits behind the answer (InTurn.behind, with the position it was made at).
 * Rushing the rest of a state parked for room instead (its reader's address over its share)
 * sent it whole past twice the share at the first edit, and the socket was closed. Past
 * BEHIND_BYTES held, where pieces wait for room (`room`), what is held is dropped for one diff
 * made when the step 2 goes (everything since the state vector the answer was made at);
 * elsewhere (a peer relay: never parked) the rest of the state goes at once. A client's
 * numbered edit rushes it too (`rush`): its number is returned at once.
 */
export class StateAnswers {
  /** The answer going out in pieces, null while none is. */
  private answering: InTurn | null = null;
  /**
   * The document's state vector when `answering` was made, where pieces may wait for room: what
   * the diff that replaces held broadcasts starts from (see `holdBroadcast`).
   */
  private answeredFrom: Uint8Array | null = null;
  /** Messages to send right after the next answer's step 2 (see `afterContent`). */
  private nextAnswer: (() => void)[] = [];

  constructor(
    private readonly host: StateAnswerHost,
    private readonly hooks: Pick<SessionHooks, 'beforeStep2' | 'sentStep2'>,
    private readonly room: PieceRoom | undefined,
  ) {}

  /**
   * Answers a step 1 with `updates` (the state the other side lacks, in order, at least one:
   * see `stateUpdates`); `written` runs once the step 2 was written out. True if the first
   * message of the answer was sent (CoalescedReply's contract).
   */
  answer(updates: readonly Uint8Array[], written: () => void): boolean {
    const replica = this.host.replica;
    // What waited for this answer goes right after its step 2.
    const waited = this.takeWaited();
    // The position of the state the answer is made of: what an ack of its step 2 means the
    // other side holds. Its pieces may go out long after, while the document moves on.
    const at = this.host.position();
    this.hooks.beforeStep2();
    const pieces = new InTurn(updates, STATE_PIECES_AHEAD, (update, last, onWritten) => {
      // The pieces but the last go as updates, each part of the state only: an ack of one says
      // nothing of the document's position (0).
      if (!last) return this.host.sendDoc({ type: 'update', update }, onWritten, 0) >= 0;
      // What was held behind it goes right after (InTurn.behind).
      this.answering = null;
      this.answeredFrom = null;
      const seq = this.host.sendDoc({ type: 'sync-step-2', update }, written, at);
      if (seq > 0) this.hooks.sentStep2?.(seq);
      // Their content is in this state (they waited for it), unlike what InTurn held behind it.
      for (const send of waited) send();
      return seq >= 0;
    }, this.room);
    if (!pieces.done) {
      this.answering = pieces;
      this.answeredFrom = this.room ? Y.encodeStateVector(replica.doc) : null;
    }
    return pieces.first;
  }

  /** A step 1 was answered with nothing (the other side lacks nothing): what waited for it goes now. */
  answeredNothing(): void {
    for (const send of this.takeWaited()) send();
  }

  private takeWaited(): (() => void)[] {
    const waited = this.nextAnswer;
    this.nextAnswer = [];
    return waited;
  }

  /**
   * A broadcast `update` made now: true when it is taken care of behind the answer going out
   * (held, or covered by the diff that replaces what is held); false when it is to be sent now
   * (no answer is going out, or the rest of it was just rushed out ahead of it).
   */
  holdBroadcast(update: Uint8Array): boolean {
    const answering = this.answering;
    if (!answering) return false;
    const at = this.host.position();
    if (answering.behind(update.byteLength, () => void this.host.sendDoc({ type: 'update', update }, undefined, at))) return true;
    const from = this.answeredFrom;
    if (from && answering.holdInstead(() => this.sendSince(from))) return true;
    answering.rush();
    return false;
  }

  /**
   * A message that refers to document content the other side must have first (a fenced write's
   * reply) is to go out now: true when it was put behind content still to come, and `send` runs
   * later, in order; false when it is to be sent now. `waiting`: a step 1 of the other side
   * waits for its answer, which broadcasts made meanwhile were left to (DocSession.sendUpdate):
   * `send` runs right after that answer's step 2. While an answer goes out, after it and after
   * what is held behind it (InTurn.after).
   */
  afterContent(waiting: boolean, send: () => void): boolean {
    if (this.answering?.after(send)) return true;
    if (!waiting) return false;
    this.nextAnswer.push(send);
    return true;
  }

  /** Sends what is left of the answer going out at once (something must go behind it now). */
  rush(): void {
    this.answering?.rush();
  }

  /** The session closed: its pieces may be waiting for room (a wake the budget holds); let go of them. */
  stop(): void {
    this.answering?.stop();
    this.answering = null;
    this.answeredFrom = null;
    this.nextAnswer = [];
  }

  /** What the document gained since `stateVector`, as one update (nothing if it gained nothing). */
  private sendSince(stateVector: Uint8Array): void {
    const update = this.host.replica.encodeState(stateVector);
    if (!isEmptyUpdate(update)) this.host.sendDoc({ type: 'update', update });
  }
}
