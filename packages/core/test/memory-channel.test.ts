import { describe, expect, it } from 'vitest';
import { channelPair, type ChannelHandler } from '../src/index.js';
import { channelConformance } from '../src/conformance/index.js';

describe('in-memory channel pair: Channel conformance', () => {
  for (const c of channelConformance) {
    it(c.name, () => c.run({ pair: async () => { const [a, b] = channelPair(); return [a, b]; } }));
  }
});

/** Collects messages and resolves `next(n)` once n have arrived. */
function collector(): ChannelHandler & { got: string[]; closed: number[]; next(n: number): Promise<void> } {
  const waiters: (() => void)[] = [];
  const h = {
    got: [] as string[],
    closed: [] as number[],
    message(bytes: Uint8Array) { h.got.push(new TextDecoder().decode(bytes)); waiters.splice(0).forEach((w) => w()); },
    close(code: number) { h.closed.push(code); waiters.splice(0).forEach((w) => w()); },
    error() {},
    next(n: number) {
      return new Promise<void>((resolve) => {
        const check = () => (h.got.length + h.closed.length >= n ? resolve() : waiters.push(check));
        check();
      });
    },
  };
  return h;
}

const text = (s: string) => new TextEncoder().encode(s);

describe('in-memory channel pair: partitions', () => {
  it('hold queues both ways (bufferedAmount grows), release delivers in order', async () => {
    const [a, b, link] = channelPair();
    const ha = collector();
    const hb = collector();
    a.attach(ha);
    b.attach(hb);
    link.hold();
    a.send(text('one'));
    a.send(text('two'));
    b.send(text('back'));
    expect(a.bufferedAmount).toBe(6);
    expect(b.bufferedAmount).toBe(4);
    // A message sent after the hold cannot overtake: a round trip proves nothing crossed.
    link.release();
    await hb.next(2);
    await ha.next(1);
    expect(hb.got).toEqual(['one', 'two']);
    expect(ha.got).toEqual(['back']);
    expect(a.bufferedAmount).toBe(0);
  });

  it('sever: both sides close 1006, what was queued is lost', async () => {
    const [a, b, link] = channelPair();
    const ha = collector();
    const hb = collector();
    a.attach(ha);
    b.attach(hb);
    link.hold();
    a.send(text('lost'));
    link.sever();
    await ha.next(1);
    await hb.next(1);
    expect(ha.closed).toEqual([1006]);
    expect(hb.closed).toEqual([1006]);
    expect(hb.got).toEqual([]);
  });
});
