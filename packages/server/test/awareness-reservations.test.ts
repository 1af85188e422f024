import { afterEach, describe, expect, it, vi } from 'vitest';
import { AwarenessReservations, RESERVATION_MS } from '../src/relay/awareness-reservations.js';

describe('awareness reservations', () => {
  afterEach(() => vi.useRealTimers());

  it('holds a freed id for its identity until the awareness timeout', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const r = new AwarenessReservations(10, 10);
    r.reserve(7, 'sub:alice');
    expect(r.holder(7)).toBe('sub:alice');
    vi.advanceTimersByTime(RESERVATION_MS - 1);
    expect(r.holder(7)).toBe('sub:alice');
    vi.advanceTimersByTime(1);
    expect(r.holder(7)).toBeUndefined();
    expect(r.size).toBe(0);
  });

  it('is bounded per document: past the cap the oldest reservation goes first', () => {
    const r = new AwarenessReservations(4, 4);
    for (let id = 1; id <= 10; id++) r.reserve(id, `sub:u${id}`);
    expect(r.size).toBe(4);
    expect([1, 2, 3, 4, 5, 6].map((id) => r.holder(id))).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
    expect([7, 8, 9, 10].map((id) => r.holder(id))).toEqual(['sub:u7', 'sub:u8', 'sub:u9', 'sub:u10']);
    // Renewing one moves it to the end (it lasts from now).
    r.reserve(7, 'sub:u7');
    r.reserve(11, 'sub:u11');
    expect(r.holder(8)).toBeUndefined();
    expect(r.holder(7)).toBe('sub:u7');
    r.release(7);
    expect(r.holder(7)).toBeUndefined();
  });

  it("is bounded per identity: one identity's churn drops its own oldest, never others'", () => {
    const r = new AwarenessReservations(1000, 3);
    r.reserve(1, 'sub:alice');
    for (let id = 100; id < 1100; id++) r.reserve(id, 'sub:mallory');
    expect(r.holder(1)).toBe('sub:alice');
    expect(r.size).toBe(4);
    expect([1097, 1098, 1099].map((id) => r.holder(id))).toEqual(['sub:mallory', 'sub:mallory', 'sub:mallory']);
  });
});
