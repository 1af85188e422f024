import type { CapsyncError } from '../errors.js';
import type { ChannelHandler } from './channel.js';

type Event =
  | { kind: 'message'; bytes: Uint8Array }
  | { kind: 'close'; code: number; reason: string }
  | { kind: 'error'; err: CapsyncError };

/**
 * The receiving half every Channel implementation shares: holds events until a handler is
 * attached, delivers at most one close and nothing after it. Implementations call
 * `message`/`close`/`error` as their transport reports them.
 */
export class HeldEvents {
  private handler: ChannelHandler | null = null;
  private held: Event[] = [];
  private closedWith: { code: number; reason: string } | null = null;

  /** True once a close was reported (delivered or held). */
  get closed(): boolean {
    return this.closedWith !== null;
  }

  attach(handler: ChannelHandler): void {
    if (this.handler) throw new Error('a channel has one handler; it is already attached');
    this.handler = handler;
    const held = this.held;
    this.held = [];
    for (const e of held) this.deliver(e);
  }

  message(bytes: Uint8Array): void {
    if (this.closedWith) return;
    // Straight through once attached: no event object per message.
    if (this.handler) this.handler.message(bytes);
    else this.held.push({ kind: 'message', bytes });
  }

  error(err: CapsyncError): void {
    if (this.closedWith) return;
    this.push({ kind: 'error', err });
  }

  close(code: number, reason: string): void {
    if (this.closedWith) return;
    this.closedWith = { code, reason };
    this.push({ kind: 'close', code, reason });
  }

  private push(e: Event): void {
    if (this.handler) this.deliver(e);
    else this.held.push(e);
  }

  private deliver(e: Event): void {
    const h = this.handler!;
    if (e.kind === 'message') h.message(e.bytes);
    else if (e.kind === 'close') h.close(e.code, e.reason);
    else h.error(e.err);
  }
}
