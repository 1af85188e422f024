import { describe, expect, it } from 'vitest';
import {
  BATCHED_FRAME_BYTES,
  BATCH_BYTES,
  CONTROL_SID,
  FrameBatch,
  MAX_BATCH_BYTES,
  MuxSessions,
  ProtocolError,
  encodeBatch,
  batchedSize,
  encodeMessage,
  encodeMuxFrame,
  readBatch,
  type FrameSink,
  type MuxHandler,
  type Message,
} from '../src/index.js';

/** A socket that records what it was given and runs callbacks when told. */
class RecordingSink implements FrameSink {
  readonly sent: Uint8Array[] = [];
  readonly callbacks: (((err?: Error) => void) | undefined)[] = [];
  send(frame: Uint8Array, cb?: (err?: Error) => void): void {
    this.sent.push(frame);
    this.callbacks.push(cb);
  }
  get bufferedAmount(): number {
    return 0;
  }
}

/** A FrameBatch whose "end of task" the test runs by hand. */
function manualBatch(): { sink: RecordingSink; batch: FrameBatch; endTask(): void } {
  const sink = new RecordingSink();
  const flushes: (() => void)[] = [];
  const batch = new FrameBatch(sink, (f) => flushes.push(f));
  batch.enabled = true;
  return { sink, batch, endTask: () => flushes.splice(0).forEach((f) => f()) };
}

const frame = (sid: number, ...body: number[]): Uint8Array => encodeMuxFrame(sid, new Uint8Array(body));
const control = (msg: Message): Uint8Array => encodeMuxFrame(CONTROL_SID, encodeMessage(msg));

describe('batches of frames (mux-frame.ts)', () => {
  it('round-trips frames, lengths over one varint byte included', () => {
    const frames = [frame(1, 0, 0, 1, 0), frame(300, ...new Array(200).fill(7)), frame(3, 2)];
    const size = frames.reduce((n, f) => n + batchedSize(f), 0);
    const got = readBatch(encodeBatch(frames, size));
    expect(got?.map((f) => [...f])).toEqual(frames.map((f) => [...f]));
  });

  it('is not a batch unless it starts with the batch kind on the control session', () => {
    expect(readBatch(frame(1, 100, 15))).toBeNull();
    expect(readBatch(control({ type: 'ping', id: 1 }))).toBeNull();
  });

  it('refuses a hello or pong whose sid 0 is written long ([0x80, 0x00]) inside a batch', () => {
    const pong = control({ type: 'pong', id: 1 });
    const long = new Uint8Array([0x80, ...pong]);
    expect(() => readBatch(encodeBatch([long], batchedSize(long)))).toThrow(ProtocolError);
  });

  it('refuses a length past the message, even inside a larger buffer, an empty frame, and what a batch may not hold', () => {
    // A view into a larger buffer: a length that runs past the view must not read what follows.
    const backing = new Uint8Array(64).fill(1);
    backing.set([0, 100, 15, 20, 1, 0], 0);
    expect(() => readBatch(backing.subarray(0, 6))).toThrow(ProtocolError);
    expect(() => readBatch(new Uint8Array([0, 100, 15, 0]))).toThrow(ProtocolError);
    expect(() => readBatch(new Uint8Array([0, 100, 15, 0x80]))).toThrow(ProtocolError);
    for (const inner of [encodeBatch([frame(1, 2)], batchedSize(frame(1, 2))), control({ type: 'pong', id: 1 }), control({ type: 'hello', protocolVersion: 1, capabilities: [] })]) {
      expect(() => readBatch(encodeBatch([inner], batchedSize(inner)))).toThrow(ProtocolError);
    }
  });
});

describe('FrameBatch', () => {
  it('sends the small frames of one task as one message, in order, once the task ends', () => {
    const { sink, batch, endTask } = manualBatch();
    const frames = [frame(1, 1), frame(3, 2), control({ type: 'session-close', sid: 5, code: 1000, reason: '' })];
    for (const f of frames) batch.send(f);
    expect(sink.sent).toHaveLength(0);
    expect(batch.bufferedAmount).toBe(frames.reduce((n, f) => n + batchedSize(f), 0));
    endTask();
    expect(sink.sent).toHaveLength(1);
    expect(readBatch(sink.sent[0]!)?.map((f) => [...f])).toEqual(frames.map((f) => [...f]));
    expect(batch.bufferedAmount).toBe(0);
  });

  it('sends a lone frame as itself', () => {
    const { sink, batch, endTask } = manualBatch();
    batch.send(frame(1, 9));
    endTask();
    expect(sink.sent.map((f) => [...f])).toEqual([[1, 9]]);
  });

  it('keeps order around frames it may not batch: large ones, hellos, pongs', () => {
    const { sink, batch, endTask } = manualBatch();
    const large = encodeMuxFrame(1, new Uint8Array(BATCHED_FRAME_BYTES + 1));
    const pong = control({ type: 'pong', id: 4 });
    batch.send(frame(1, 1));
    batch.send(large);
    batch.send(frame(3, 2));
    batch.send(pong);
    batch.send(frame(5, 3));
    endTask();
    expect(sink.sent.map((f) => [...f.subarray(0, 2)])).toEqual([[1, 1], [1, 0], [3, 2], [0, 100], [5, 3]]);
    expect(sink.sent[1]).toBe(large);
    expect(sink.sent[3]).toBe(pong);
  });

  it('sends a batch once it holds BATCH_BYTES, before the task ends', () => {
    const { sink, batch } = manualBatch();
    const f = encodeMuxFrame(1, new Uint8Array(BATCHED_FRAME_BYTES - 8));
    const fit = Math.floor(BATCH_BYTES / batchedSize(f));
    for (let i = 0; i <= fit; i++) batch.send(f);
    expect(sink.sent).toHaveLength(1);
    expect(readBatch(sink.sent[0]!)).toHaveLength(fit);
    expect(sink.sent[0]!.byteLength).toBeLessThanOrEqual(BATCH_BYTES + 3);
  });

  it("runs each frame's written-out callback when its batch was written out", () => {
    const { sink, batch, endTask } = manualBatch();
    const done: number[] = [];
    batch.send(frame(1, 1), () => done.push(1));
    batch.send(frame(3, 1));
    batch.send(frame(5, 1), () => done.push(5));
    endTask();
    expect(done).toEqual([]);
    sink.callbacks[0]!();
    expect(done).toEqual([1, 5]);
  });

  it('sends everything as it comes while off (the other side did not say it takes batches)', () => {
    const { sink, batch } = manualBatch();
    batch.enabled = false;
    batch.send(frame(1, 1));
    batch.send(frame(3, 1));
    expect(sink.sent).toHaveLength(2);
  });

  it('flush sends what is held at once (before a close); clear forgets it', () => {
    const { sink, batch, endTask } = manualBatch();
    batch.send(frame(1, 1));
    batch.send(frame(3, 1));
    batch.flush();
    expect(sink.sent).toHaveLength(1);
    batch.send(frame(5, 1));
    batch.clear();
    endTask();
    expect(sink.sent).toHaveLength(1);
  });
});

describe('MuxSessions takes batches', () => {
  it('handles each frame of a batch as if it had come alone, and drops the rest once the socket closed', () => {
    const got: Message[] = [];
    let sessions: MuxSessions;
    const handler: MuxHandler = {
      control: (msg) => {
        got.push(msg);
        if (msg.type === 'ping' && msg.id === 2) sessions.socketClosed(1000, '');
      },
      open: () => {
        throw new Error('no opens here');
      },
    };
    sessions = new MuxSessions(new RecordingSink(), true, handler);
    const frames = [1, 2, 3].map((id) => control({ type: 'ping', id }));
    sessions.receive(encodeBatch(frames, frames.reduce((n, f) => n + batchedSize(f), 0)));
    expect(got.map((m) => (m.type === 'ping' ? m.id : -1))).toEqual([1, 2]);
  });
});

describe('a batch holds at most MAX_BATCH_BYTES of frames (review rev7)', () => {
  it('readBatch refuses a larger one; FrameBatch never sends one', () => {
    const pings = (n: number) => Array.from({ length: n }, (_, id) => control({ type: 'ping', id: id % 100 }));
    const size = (fs: Uint8Array[]) => fs.reduce((n, f) => n + batchedSize(f), 0);
    const one = batchedSize(pings(1)[0]!);
    const fits = pings(Math.floor(MAX_BATCH_BYTES / one));
    expect(readBatch(encodeBatch(fits, size(fits)))).toHaveLength(fits.length);
    const over = pings(Math.floor(MAX_BATCH_BYTES / one) + 1);
    expect(() => readBatch(encodeBatch(over, size(over)))).toThrow(ProtocolError);

    // What FrameBatch sends, small frames and frames at BATCHED_FRAME_BYTES, is always taken.
    const { sink, batch, endTask } = manualBatch();
    for (let i = 0; i < 100; i++) {
      batch.send(frame(1, ...new Array(i % 3 === 0 ? BATCHED_FRAME_BYTES - 2 : 5).fill(1)));
    }
    endTask();
    for (const message of sink.sent) expect(() => readBatch(message)).not.toThrow();
    expect(sink.sent.length).toBeGreaterThan(1);
  });
});

describe('a received batch holds no more than its frames (review rev7)', () => {
  // A frame of a batch that someone keeps (a piece of an unfinished chunked message, input
  // queued while a document loads) must not keep the whole batch alive: a hostile client could
  // send one byte worth keeping and 60 KiB of frames for a closed session in each message, and
  // every bound that counts what is kept (ChunkAssembler, SocketInputQueue) would count the byte.
  const filler = (sid: number) => encodeMuxFrame(sid, new Uint8Array(60 * 1024));

  it('readBatch gives frames that own their bytes', () => {
    const frames = [frame(1, 0, 1), filler(3)];
    const message = encodeBatch(frames, frames.reduce((n, x) => n + batchedSize(x), 0));
    // As the relay receives it: a Node Buffer (whose `slice` is a view).
    for (const received of [message, Buffer.from(message)]) {
      for (const f of readBatch(received)!) expect(f.buffer.byteLength).toBe(f.byteLength);
    }
  });

  it("a session's message from a batch does not keep the rest of the batch", () => {
    const sessions = new MuxSessions(new RecordingSink(), true, { control: () => {}, open: () => {} });
    const kept: Uint8Array[] = [];
    const live = sessions.open({ kind: 'doc', name: 'a', subdoc: '', capabilities: [] });
    live.attach({ message: (m) => kept.push(m), error: () => {}, close: () => {} });
    const closed = sessions.open({ kind: 'doc', name: 'b', subdoc: '', capabilities: [] });
    closed.close(1000, '');
    const frames = [frame(live.sid, 0, 1, 2), filler(closed.sid)];
    sessions.receive(encodeBatch(frames, frames.reduce((n, x) => n + batchedSize(x), 0)));
    expect(kept.map((m) => [...m])).toEqual([[0, 1, 2]]);
    expect(kept[0]!.buffer.byteLength).toBeLessThan(1024);
  });
});
