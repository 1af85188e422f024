import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CapsyncError } from '@capsync/core';
import { RelayMetrics } from '../src/metrics.js';
import { InTurn } from '../../core/src/session/send-in-turn.js';
import { SendBuffer } from '../src/relay/send-buffer.js';
import { UnsentBudget, type UnsentAccount } from '../src/relay/unsent-budget.js';

const GRACE = 1_000;

/** A holder that records its eviction and, like a connection, leaves the budget when evicted. */
function holder(budget: UnsentBudget, address: string | undefined) {
  const h = {
    evicted: null as CapsyncError | null,
    account: null as unknown as UnsentAccount,
    evict(err: CapsyncError) {
      h.evicted = err;
      budget.close(h.account);
    },
  };
  h.account = budget.open(address, h);
  return h;
}

describe('UnsentBudget', () => {
  let metrics: RelayMetrics;
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    metrics = new RelayMetrics({ collectDefault: false });
  });
  afterEach(() => vi.useRealTimers());

  it('closes the holders that kept the most unsent bytes past the grace period, until the total holds; never one that empties', async () => {
    const budget = new UnsentBudget({ maxTotal: 100, maxPerAddress: 0, graceMs: GRACE }, metrics);
    const reader = holder(budget, 'a');
    const small = holder(budget, 'b');
    const big = holder(budget, 'c');
    budget.update(small.account, 40);
    budget.update(big.account, 60);
    budget.update(reader.account, 50); // total 150 > 100
    vi.advanceTimersByTime(GRACE / 2);
    budget.update(reader.account, 0); // the reader read it all
    budget.update(reader.account, 30); // and got more: a new backlog, its grace starts over
    vi.advanceTimersByTime(GRACE / 2);
    // The pass ran when big and small were due: big (60) goes; 70 <= 100 holds, small stays.
    expect(big.evicted?.code).toBe('slow-consumer');
    expect(big.evicted?.message).toMatch(/--max-unsent-bytes:/);
    expect(small.evicted).toBeNull();
    expect(reader.evicted).toBeNull();
    expect(budget.unsent()).toBe(70);
    expect((await metrics.limitRefusals.get()).values.find((v) => v.labels.limit === 'max-unsent-bytes')?.value).toBe(1);
  });

  it('holds each address to its share, evicts at once past twice it, and refuses or delays new full-state answers while over it', () => {
    const budget = new UnsentBudget({ maxTotal: 0, maxPerAddress: 100, graceMs: GRACE }, metrics);
    const other = holder(budget, 'honest');
    budget.update(other.account, 90);
    const hogs = [holder(budget, 'x'), holder(budget, 'x'), holder(budget, 'x')];
    budget.update(hogs[0]!.account, 70);
    budget.update(hogs[1]!.account, 60); // x: 130 > 100
    expect(budget.refusal('x')?.code).toBe('limit-exceeded');
    expect(budget.refusal('honest')).toBeUndefined();
    let woken = 0;
    expect(budget.hasRoom(hogs[2]!.account, () => woken++)).toBe(false);
    expect(budget.hasRoom(other.account, () => {})).toBe(true);
    vi.advanceTimersByTime(GRACE);
    // The largest of x goes; x is back within its share, so the waiting answer may go out.
    expect(hogs[0]!.evicted?.message).toMatch(/--max-unsent-bytes-per-address:/);
    expect(hogs[1]!.evicted).toBeNull();
    expect(woken).toBe(1);
    expect(other.evicted).toBeNull();
    // A burst past twice the share: the one that goes over is closed at once.
    expect(budget.update(hogs[2]!.account, 150)).toBe(false);
    expect(hogs[2]!.evicted).not.toBeNull();
    expect(budget.unsent('x')).toBe(60);
    // Peer relays (no address) count in the total only.
    const peer = holder(budget, undefined);
    expect(budget.update(peer.account, 10_000)).toBe(true);
    expect(budget.unsent()).toBe(90 + 60 + 10_000);
  });

  it('keeps looking at an account whose wakes filled it again within the report that emptied it', () => {
    // Found with multiplexed sockets: the report that empties an account wakes the holders
    // waiting for room, whose answers report the same account full again from inside it. The
    // account must stay among those a pass refreshes, or the holders that wait again are never woken.
    const budget = new UnsentBudget({ maxTotal: 0, maxPerAddress: 100, graceMs: GRACE }, metrics);
    let buffered = 150;
    const socket = { ...holder(budget, 'x'), refresh: () => void budget.update(socket.account, buffered) };
    socket.account = budget.open('x', socket);
    budget.update(socket.account, buffered);
    const woken: string[] = [];
    const wait = (name: string, then?: () => void): void => {
      if (budget.hasRoom(socket.account, () => (woken.push(name), then?.()))) throw new Error(`${name} had room`);
    };
    // The first waiter answers when woken (120 bytes, over the share again); the second waits again.
    wait('a', () => budget.update(socket.account, (buffered = 120)));
    budget.update(socket.account, (buffered = 0));
    expect(woken).toEqual(['a']);
    wait('b');
    // The socket drains; a pass (50 ms while anyone waits) sees it and wakes b.
    buffered = 0;
    vi.advanceTimersByTime(200);
    expect(woken).toEqual(['a', 'b']);
  });

  it('wakes every waiter of an account, each once, however often it asked', () => {
    // One account is shared by several waiters: a multiplexed socket's sessions, a connection's
    // step 2 and awareness answers, a state's next pieces. One wake per account left all but the
    // last waiting for ever.
    const budget = new UnsentBudget({ maxTotal: 0, maxPerAddress: 100, graceMs: GRACE }, metrics);
    const socket = holder(budget, 'x');
    budget.update(socket.account, 150);
    const woken: string[] = [];
    const wakes = ['a', 'b', 'c'].map((name) => () => void woken.push(name));
    for (const wake of [...wakes, wakes[0]!]) expect(budget.hasRoom(socket.account, wake)).toBe(false);
    budget.update(socket.account, 0);
    expect(woken).toEqual(['a', 'b', 'c']);
    // Woken once: nothing left waiting.
    budget.update(socket.account, 150);
    budget.update(socket.account, 0);
    expect(woken).toEqual(['a', 'b', 'c']);
  });

  it("a state's pieces go in order when the room's wake runs inside one of their sends", () => {
    // Review of the per-piece room check: a send that found the socket drained reported it before
    // sending; the report woke the state's own pump, which sent the step 2 ahead of the piece
    // being sent (rush). Now the report comes after the send, and a pump run inside a send waits.
    const budget = new UnsentBudget({ maxTotal: 0, maxPerAddress: 100, graceMs: GRACE }, metrics);
    const wire: string[] = [];
    const socket = {
      bufferedAmount: 0,
      send(data: Uint8Array) {
        wire.push(new TextDecoder().decode(data.subarray(0, 2)));
        this.bufferedAmount += data.byteLength;
      },
    };
    const buffer = new SendBuffer(socket, { sendBufferLimit: 1e9, slowConsumerGraceMs: 1e9, budget, address: 'x' }, () => {});
    const pieces = ['p0', 'p1', 'p2', 'p3'].map((p) => new TextEncoder().encode(p.padEnd(60, '.')));
    const written: (() => void)[] = [];
    const turn = new InTurn(pieces, 2, (piece, _last, onWritten) => {
      if (onWritten) written.push(onWritten);
      return buffer.send(piece, onWritten);
    }, { hasRoom: (wake) => buffer.hasRoom(wake) });
    expect(wire).toEqual(['p0', 'p1']); // 120 bytes: over the share, p2 waits for room
    written.shift()!();
    written.shift()!();
    socket.bufferedAmount = 0; // drained, and no pass has seen it yet
    turn.rush(); // a broadcast must go behind the state
    expect(wire).toEqual(['p0', 'p1', 'p2', 'p3']);
  });

  it('an address exactly at its share is within it: nothing waits that the pass would not evict', () => {
    const budget = new UnsentBudget({ maxTotal: 0, maxPerAddress: 100, graceMs: GRACE }, metrics);
    const socket = holder(budget, 'x');
    budget.update(socket.account, 100);
    expect(budget.hasRoom(socket.account, () => {})).toBe(true);
    expect(budget.refusal('x')).toBeUndefined();
    budget.update(socket.account, 101);
    expect(budget.hasRoom(socket.account, () => {})).toBe(false);
    // A closed account waits for nothing (its sends are refused).
    budget.close(socket.account);
    expect(budget.hasRoom(socket.account, () => {})).toBe(true);
  });
});
