import { EventEmitter } from 'node:events';
import * as Y from 'yjs';
import { decodeMessage, encodeMessage, type Message } from '@capsync/core';
import { waitForEvent } from './wait.js';

export interface CloseInfo {
  code: number;
  reason: string;
}

/** The origin of what the relay sent (never sent back); a test applies content with it to hold it without sending it. */
export const REMOTE = Symbol('remote');

/**
 * The document half of a wire-level test client, whatever carries it (a WebSocket of its own,
 * ProtocolClient; or one session of a multiplexed socket, MuxDocSession): keeps a Y.Doc, counts
 * the document messages it sends (seq, as the relay numbers them) and records what it receives.
 * Local edits of `doc` go out at once. Events: 'message' (Message), 'close' (CloseInfo), 'change'
 * (after either).
 */
export abstract class WireDocClient extends EventEmitter {
  readonly doc = new Y.Doc();
  readonly received: Message[] = [];
  /** Document-carrying messages sent (sync step 2 + update), as the relay counts them. */
  seq = 0;
  ackedSeq = 0;
  lastAck: Extract<Message, { type: 'ack' }> | null = null;
  errors: Extract<Message, { type: 'error' }>[] = [];
  closeInfo: CloseInfo | null = null;
  private gotStep2 = false;

  protected constructor(
    /** Reply to the relay's sync step 1 with our state. */
    private readonly answerSync: boolean,
  ) {
    super();
    this.setMaxListeners(100);
    this.doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin !== REMOTE && this.isOpen) this.sendMessage({ type: 'update', update });
    });
  }

  /** Sends one encoded message on this client's transport. */
  protected abstract transmit(bytes: Uint8Array): void;
  /** Whether local edits can go out now. */
  protected abstract get isOpen(): boolean;
  abstract close(): Promise<CloseInfo>;

  get text(): string {
    return this.doc.getText('t').toString();
  }

  /** The length of text "t", without rendering it (cheap enough to check after every message). */
  get textLength(): number {
    return this.doc.getText('t').length;
  }

  /** Inserts at the end of text "t"; the update goes out at once. Returns its seq. */
  type(text: string): number {
    const t = this.doc.getText('t');
    t.insert(t.length, text);
    return this.seq;
  }

  sendMessage(msg: Message): void {
    if (msg.type === 'update' || msg.type === 'sync-step-2') this.seq++;
    this.transmit(encodeMessage(msg));
  }

  waitSynced(timeoutMs = 10_000): Promise<true> {
    return waitForEvent(this, 'message', () => this.gotStep2 || undefined, 'initial sync', timeoutMs);
  }

  waitForAck(seq: number, timeoutMs = 10_000): Promise<true> {
    return waitForEvent(this, 'message', () => this.ackedSeq >= seq || undefined, `ack of seq ${seq}`, timeoutMs);
  }

  waitForText(expected: string, timeoutMs = 10_000): Promise<true> {
    return waitForEvent(this, 'message', () => this.text === expected || undefined, `text "${expected.slice(0, 40)}"`, timeoutMs);
  }

  /** Waits until `check` holds, re-checking after every message and on close. */
  waitFor<T>(check: () => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
    return waitForEvent(this, 'change', check, what, timeoutMs);
  }

  /**
   * How message `seq` ended: 'acked', or `closed <code> <reason>` when the relay closed the
   * connection first (what the ownership tests compare against).
   */
  ackedOrClosed(seq = this.seq, timeoutMs = 10_000): Promise<string> {
    return Promise.race([
      this.waitForAck(seq, timeoutMs).then(() => 'acked'),
      this.waitClosed(timeoutMs).then((c) => `closed ${c.code} ${c.reason}`),
    ]);
  }

  waitClosed(timeoutMs = 10_000): Promise<CloseInfo> {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return waitForEvent(this, 'close', () => this.closeInfo ?? undefined, 'close', timeoutMs);
  }

  /** The transport delivered one frame of this document. */
  protected onFrame(frame: Uint8Array): void {
    const msg = decodeMessage(frame);
    this.received.push(msg);
    switch (msg.type) {
      case 'sync-step-1':
        if (this.answerSync) this.sendMessage({ type: 'sync-step-2', update: Y.encodeStateAsUpdate(this.doc, msg.stateVector) });
        break;
      case 'sync-step-2':
        Y.applyUpdate(this.doc, msg.update, REMOTE);
        this.gotStep2 = true;
        break;
      case 'update':
        Y.applyUpdate(this.doc, msg.update, REMOTE);
        break;
      case 'ack':
        this.ackedSeq = Math.max(this.ackedSeq, msg.seq);
        this.lastAck = msg;
        break;
      case 'error':
        this.errors.push(msg);
        break;
      default:
        break;
    }
    this.emit('message', msg);
    this.emit('change');
  }

  /** The transport closed (once). */
  protected onClose(info: CloseInfo): void {
    if (this.closeInfo) return;
    this.closeInfo = info;
    this.emit('close', info);
    this.emit('change');
  }
}
