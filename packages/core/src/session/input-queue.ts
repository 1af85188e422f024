/**
 * Frames received while their document cannot take them yet (loading, recovering, a fenced
 * commit in progress), kept in arrival order up to `maxBytes`. Past the bound `push` refuses
 * (the caller closes or resyncs the link): a sender cannot make a paused document hold
 * unbounded input.
 */
export class InputQueue {
  private frames: Uint8Array[] = [];
  private head = 0;
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get length(): number {
    return this.frames.length - this.head;
  }

  /** Queues `frame`; false (and nothing queued) when it would pass `maxBytes`. */
  push(frame: Uint8Array): boolean {
    if (this.bytes + frame.byteLength > this.maxBytes) return false;
    this.frames.push(frame);
    this.bytes += frame.byteLength;
    return true;
  }

  shift(): Uint8Array | undefined {
    if (this.head >= this.frames.length) return undefined;
    const frame = this.frames[this.head]!;
    this.frames[this.head++] = EMPTY;
    this.bytes -= frame.byteLength;
    if (this.head === this.frames.length) this.clear();
    return frame;
  }

  clear(): void {
    this.frames = [];
    this.head = 0;
    this.bytes = 0;
  }
}

const EMPTY = new Uint8Array(0);
