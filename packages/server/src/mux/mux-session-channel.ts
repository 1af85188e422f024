import { CapsyncError, SessionChannel, type HelloMessage, type SessionTransport } from '@capsync/core';
import type { AccountedChannel, ServedChannel } from '../relay/accounted-channel.js';
import type { SendBuffer } from '../relay/send-buffer.js';
import type { QueueingSession, SocketInputQueue } from './socket-input-queue.js';

/** What a session needs of the document connection serving it (a RelayConnection). */
export interface MuxServedDoc {
  /** Its document once loaded (input is queued until then, and while it is paused). */
  readonly document: { readonly paused: boolean } | null;
  /** Closes the session with the error's close code. */
  fail(err: CapsyncError): void;
}

/**
 * One document session of a multiplexed socket, as the relay serves it (ServedChannel): a
 * SessionChannel whose accounting is its socket's. Its sends go through the socket's one
 * SendBuffer, so a reader that stops reading is one slow consumer (the socket, 4429), not one per
 * document, and its full-state answers wait for the socket's room in the relay's budget. What it
 * receives while its document loads counts against the socket's one input queue bound
 * (SocketInputQueue): past it the session fails (4429), not the socket.
 */
export class MuxSessionChannel extends SessionChannel implements ServedChannel, QueueingSession {
  readonly outbound: SendBuffer;
  private served: MuxServedDoc | null = null;
  private isFinished = false;

  constructor(
    sid: number,
    transport: SessionTransport,
    hello: HelloMessage,
    /** The socket: its one SendBuffer, and its room in the unsent budget, are its sessions'. */
    private readonly socket: AccountedChannel,
    private readonly input: SocketInputQueue,
    /** Called once when the session ends (it gives back its place in the address's count). */
    private readonly released: () => void,
  ) {
    super(sid, transport, hello);
    this.outbound = socket.outbound;
  }

  /** The document connection serving this session: set as the open is accepted, before any frame. */
  serve(doc: MuxServedDoc): void {
    this.served = doc;
  }

  get queueing(): boolean {
    if (this.closed) return false;
    const doc = this.served?.document ?? null;
    return doc === null || doc.paused;
  }

  hasRoom(wake: () => void): boolean {
    return this.socket.hasRoom(wake);
  }

  // The socket checked the frame (binary, within the size limit) before routing it here.
  override received(data: Uint8Array, _isBinary = true): void {
    if (this.closed) return;
    if (!this.input.admit(this.sid, this, data.byteLength)) {
      const why = `more than ${this.input.maxBytes} bytes of input queued on this multiplexed socket while its documents load`;
      this.served?.fail(new CapsyncError('slow-consumer', why));
      return;
    }
    super.received(data);
  }

  override close(code: number, reason: string): void {
    super.close(code, reason);
    this.finished();
  }

  override transportClosed(code?: number, reason?: string): void {
    super.transportClosed(code, reason);
    this.finished();
  }

  /** Once, when the session ends (either side, or the socket). */
  private finished(): void {
    if (this.isFinished) return;
    this.isFinished = true;
    this.input.forget(this.sid);
    this.released();
  }
}
