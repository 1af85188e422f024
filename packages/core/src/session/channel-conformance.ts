/**
 * The `Channel` conformance suite: every Channel implementation runs all of these cases
 * (see channel.ts for the contract they check).
 *
 *   import { channelConformance } from '@capsync/core/conformance'
 *
 * Cases are plain async functions that throw on failure (see conformance-case.ts).
 */
import type { ConformanceCase, HarnessBase } from '../conformance/conformance-case.js';
import type { CapsyncError } from '../errors.js';
import { ABNORMAL_CLOSURE, type Channel, type ChannelHandler } from './channel.js';

export interface ChannelHarness extends HarnessBase {
  /** Two connected, open channels (for sockets: the client's end and the server's). */
  pair(): Promise<[Channel, Channel]>;
}

export type ChannelConformanceCase = ConformanceCase<ChannelHarness>;

const TIMEOUT_MS = 5_000;

function fail(message: string): never {
  throw new Error(`Channel conformance: ${message}`);
}

/** A handler that records what it receives. */
class Recorder implements ChannelHandler {
  messages: Uint8Array[] = [];
  closes: { code: number; reason: string }[] = [];
  errors: CapsyncError[] = [];
  private waiters: (() => void)[] = [];
  message(bytes: Uint8Array): void {
    if (this.closes.length > 0) fail('a message was delivered after close');
    this.messages.push(bytes);
    this.wake();
  }
  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
    this.wake();
  }
  error(err: CapsyncError): void {
    this.errors.push(err);
    this.wake();
  }
  /** Resolves once `ready()` holds, re-checked after every event; fails after a timeout. */
  until(ready: () => boolean, what: string): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Channel conformance: timed out waiting for ${what}`)), TIMEOUT_MS);
      const check = (): void => {
        if (!ready()) return void this.waiters.push(check);
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(check);
    });
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Message `i` of a test stream: its index in the first 4 bytes, then `size - 4` filler bytes. */
function numbered(i: number, size: number): Uint8Array {
  const b = new Uint8Array(Math.max(4, size));
  new DataView(b.buffer).setUint32(0, i);
  b.fill(i & 0xff, 4);
  return b;
}
function indexOf(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0);
}

async function attached(harness: ChannelHarness): Promise<{ a: Channel; b: Channel; ra: Recorder; rb: Recorder }> {
  const [a, b] = await harness.pair();
  const ra = new Recorder();
  const rb = new Recorder();
  a.attach(ra);
  b.attach(rb);
  return { a, b, ra, rb };
}

export const channelConformance: ChannelConformanceCase[] = [
  {
    name: 'messages arrive whole, in order and exactly once, both ways',
    async run(harness) {
      const { a, b, ra, rb } = await attached(harness);
      const sizes = [0, 1, 5, 100, 70_000, 3, 1_000_000, 17];
      const n = 400;
      for (let i = 0; i < n; i++) {
        a.send(numbered(i, sizes[i % sizes.length]!));
        b.send(numbered(i, sizes[(i + 3) % sizes.length]!));
      }
      await rb.until(() => rb.messages.length >= n, `${n} messages a -> b`);
      await ra.until(() => ra.messages.length >= n, `${n} messages b -> a`);
      for (const [got, offset] of [[rb.messages, 0], [ra.messages, 3]] as const) {
        if (got.length !== n) fail(`expected ${n} messages, got ${got.length}`);
        got.forEach((m, i) => {
          if (indexOf(m) !== i) fail(`message ${i} arrived as message ${indexOf(m)}`);
          if (m.byteLength !== Math.max(4, sizes[(i + offset) % sizes.length]!)) fail(`message ${i} has ${m.byteLength} bytes`);
          if (m.byteLength > 4 && (m[m.byteLength - 1] !== (i & 0xff))) fail(`message ${i} is corrupted`);
        });
      }
      a.close(1000, 'done');
      await ra.until(() => ra.closes.length > 0, 'close');
    },
  },
  {
    name: 'what arrives before attach is held and delivered on attach, in order',
    async run(harness) {
      const [a, b] = await harness.pair();
      const ra = new Recorder();
      a.attach(ra);
      for (let i = 0; i < 10; i++) a.send(numbered(i, 8));
      a.close(4000, 'bye');
      await ra.until(() => ra.closes.length > 0, 'the closing side to see its close');
      const rb = new Recorder();
      b.attach(rb);
      await rb.until(() => rb.closes.length > 0, 'held close');
      if (rb.messages.map(indexOf).join() !== '0,1,2,3,4,5,6,7,8,9') fail(`held messages arrived as ${rb.messages.map(indexOf).join()}`);
    },
  },
  {
    name: 'close(code, reason) reaches both sides once, after everything sent before it; later sends are dropped',
    async run(harness) {
      const { a, b, ra, rb } = await attached(harness);
      let written = 0;
      for (let i = 0; i < 50; i++) a.send(numbered(i, 1000), () => written++);
      a.close(4321, 'closing on purpose');
      let late = 0;
      a.send(numbered(99, 8), () => late++); // must not throw, must be dropped
      await rb.until(() => rb.closes.length > 0, 'close on the other side');
      await ra.until(() => ra.closes.length > 0, 'close on the closing side');
      b.send(numbered(100, 8)); // after its close: a no-op
      for (const [r, side] of [[ra, 'closing'], [rb, 'other']] as const) {
        if (r.closes.length !== 1) fail(`${side} side saw ${r.closes.length} closes`);
        const c = r.closes[0]!;
        if (c.code !== 4321 || c.reason !== 'closing on purpose') fail(`${side} side saw close ${c.code} '${c.reason}'`);
      }
      if (rb.messages.length !== 50) fail(`${rb.messages.length} of the 50 messages sent before close arrived`);
      if (written !== 50) fail(`onWritten ran for ${written} of the 50 messages sent before close`);
      if (late !== 0) fail('onWritten ran for a send after close');
      if (ra.messages.length !== 0) fail('a message sent after close arrived');
    },
  },
  {
    name: 'onWritten runs once per send and bufferedAmount returns to 0',
    async run(harness) {
      const { a, b, rb } = await attached(harness);
      const counts = new Array<number>(20).fill(0);
      for (let i = 0; i < 20; i++) a.send(numbered(i, 50_000), () => counts[i]!++);
      await rb.until(() => rb.messages.length === 20, '20 messages');
      await rb.until(() => counts.every((c) => c === 1) && a.bufferedAmount === 0, 'every onWritten and an empty buffer');
      if (counts.some((c) => c !== 1)) fail(`onWritten counts ${counts.join()}`);
      a.close(1000, '');
      b.close(1000, '');
    },
  },
  {
    name: 'terminate: both sides see 1006 once, nothing is delivered after it, sends are no-ops',
    async run(harness) {
      const { a, b, ra, rb } = await attached(harness);
      a.send(numbered(0, 8));
      await rb.until(() => rb.messages.length === 1, 'first message');
      a.terminate();
      a.send(numbered(1, 8));
      await ra.until(() => ra.closes.length > 0, 'close on the terminating side');
      await rb.until(() => rb.closes.length > 0, 'close on the other side');
      b.send(numbered(2, 8));
      for (const [r, side] of [[ra, 'terminating'], [rb, 'other']] as const) {
        if (r.closes.length !== 1 || r.closes[0]!.code !== ABNORMAL_CLOSURE) fail(`${side} side saw ${JSON.stringify(r.closes)}`);
      }
      if (rb.messages.length !== 1 || ra.messages.length !== 0) fail('a message crossed a terminated channel');
    },
  },
];
