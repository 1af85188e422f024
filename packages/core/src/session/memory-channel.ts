import { ABNORMAL_CLOSURE, type Channel, type ChannelHandler } from './channel.js';
import { HeldEvents } from './held-events.js';

/** Runs `f` in a later macrotask, like a socket's delivery (setImmediate where there is one). */
const later: (f: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (f) => (globalThis as unknown as { setImmediate(f: () => void): void }).setImmediate(f)
    : (f) => void setTimeout(f, 0);

interface Queued {
  bytes: Uint8Array;
  onWritten: (() => void) | undefined;
}

/** One side of a `channelPair`. */
class MemoryChannel implements Channel {
  readonly events = new HeldEvents();
  queue: Queued[] = [];
  queuedBytes = 0;
  /** 'closing': close() was called, its close frame not yet delivered. */
  state: 'open' | 'closing' | 'closed' = 'open';
  closeFrame: { code: number; reason: string } | null = null;

  constructor(private readonly link: MemoryLink) {}

  send(bytes: Uint8Array, onWritten?: () => void): void {
    if (this.state !== 'open') return;
    this.queue.push({ bytes, onWritten });
    this.queuedBytes += bytes.byteLength;
    this.link.schedule();
  }

  get bufferedAmount(): number {
    return this.queuedBytes;
  }

  close(code: number, reason: string): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    this.closeFrame = { code, reason };
    this.link.schedule();
  }

  terminate(): void {
    this.link.sever();
  }

  attach(handler: ChannelHandler): void {
    this.events.attach(handler);
  }

  /** Takes the oldest queued message out of the buffer ("written"). */
  shift(): Queued | undefined {
    const m = this.queue.shift();
    if (m) {
      this.queuedBytes -= m.bytes.byteLength;
      m.onWritten?.();
    }
    return m;
  }
}

/** The wire between the two sides of a pair: delivery, partitions. */
class MemoryLink {
  readonly a = new MemoryChannel(this);
  readonly b = new MemoryChannel(this);
  private held = false;
  private dead = false;
  private scheduled = false;

  schedule(): void {
    if (this.scheduled || this.held || this.dead) return;
    this.scheduled = true;
    later(() => {
      this.scheduled = false;
      if (this.held || this.dead) return;
      this.drain(this.a, this.b);
      this.drain(this.b, this.a);
    });
  }

  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    if (this.a.queue.length + this.b.queue.length > 0 || this.a.closeFrame || this.b.closeFrame) this.schedule();
  }

  /** Both sides die at once: what was queued counts as written (and is lost), both see 1006. */
  sever(): void {
    if (this.dead) return;
    this.dead = true;
    for (const side of [this.a, this.b]) {
      side.state = 'closed';
      while (side.shift());
    }
    later(() => {
      this.a.events.close(ABNORMAL_CLOSURE, '');
      this.b.events.close(ABNORMAL_CLOSURE, '');
    });
  }

  private drain(from: MemoryChannel, to: MemoryChannel): void {
    for (let m = from.shift(); m; m = from.shift()) to.events.message(m.bytes);
    if (from.state !== 'closing' || !from.closeFrame) return;
    from.state = 'closed';
    const { code, reason } = from.closeFrame;
    if (to.state === 'open') {
      // The other side answers the close: what it sent before it knew still arrives first.
      to.state = 'closed';
      for (let m = to.shift(); m; m = to.shift()) from.events.message(m.bytes);
    }
    to.events.close(code, reason);
    from.events.close(code, reason);
  }
}

/** Controls of an in-memory pair, for partition and failure tests. */
export interface ChannelPairControl {
  /** Stops delivery both ways (messages queue up, as on a stalled TCP connection). */
  hold(): void;
  /** Delivers what was held, and resumes. */
  release(): void;
  /** Cuts the link: both sides close with 1006, queued messages are lost. */
  sever(): void;
}

/**
 * Two linked in-memory channels: what one side sends, the other receives, in order, in a later
 * macrotask (as from a socket). For tests that run the relay, the mesh and clients in one
 * process.
 */
export function channelPair(): [Channel, Channel, ChannelPairControl] {
  const link = new MemoryLink();
  return [link.a, link.b, { hold: () => link.hold(), release: () => link.release(), sever: () => link.sever() }];
}
