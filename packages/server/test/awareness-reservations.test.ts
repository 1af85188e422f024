import { afterEach, describe, expect, it, vi } from 'vitest';
import { AwarenessReservations, RESERVATION_MS } from '../src/relay/awareness-reservations.js';

describe('awareness reservations', () => {
  afterEach(() => vi.useRealTimers());

  it('holds a freed id for its identity until the awareness timeout', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const r = new AwarenessReservations({ perDoc: 10, perIdentity: 10, perAddress: 10 });
    r.reserve(7, { identity: 'sub:alice' });
    expect(r.holder(7)).toBe('sub:alice');
    vi.advanceTimersByTime(RESERVATION_MS - 1);
    expect(r.holder(7)).toBe('sub:alice');
    vi.advanceTimersByTime(1);
    expect(r.holder(7)).toBeUndefined();
    expect(r.size).toBe(0);
  });

  it('is bounded per document: past the cap the oldest reservation goes first', () => {
    const r = new AwarenessReservations({ perDoc: 4, perIdentity: 4, perAddress: 4 });
    for (let id = 1; id <= 10; id++) r.reserve(id, { identity: `sub:u${id}` });
    expect(r.size).toBe(4);
    expect([1, 2, 3, 4, 5, 6].map((id) => r.holder(id))).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
    expect([7, 8, 9, 10].map((id) => r.holder(id))).toEqual(['sub:u7', 'sub:u8', 'sub:u9', 'sub:u10']);
    // Renewing one moves it to the end (it lasts from now).
    r.reserve(7, { identity: 'sub:u7' });
    r.reserve(11, { identity: 'sub:u11' });
    expect(r.holder(8)).toBeUndefined();
    expect(r.holder(7)).toBe('sub:u7');
    r.release(7);
    expect(r.holder(7)).toBeUndefined();
  });

  it("is bounded per identity: one identity's churn drops its own oldest, never others'", () => {
    const r = new AwarenessReservations({ perDoc: 1000, perIdentity: 3, perAddress: 10 });
    r.reserve(1, { identity: 'sub:alice' });
    for (let id = 100; id < 1100; id++) r.reserve(id, { identity: 'sub:mallory' });
    expect(r.holder(1)).toBe('sub:alice');
    expect(r.size).toBe(4);
    expect([1097, 1098, 1099].map((id) => r.holder(id))).toEqual(['sub:mallory', 'sub:mallory', 'sub:mallory']);
  });

  it('is bounded per address for owner-key identities: past the share the new one is not made, older ones stay', () => {
    let refused = 0;
    const r = new AwarenessReservations({ perDoc: 1000, perIdentity: 16, perAddress: 8 }, () => refused++);
    r.reserve(1, { identity: 'key:alice', address: '10.0.0.1' });
    // 63 made-up owner keys from alice's own address, 16 ids each.
    for (let k = 0; k < 63; k++) for (let i = 0; i < 16; i++) r.reserve(1000 + k * 16 + i, { identity: `key:m${k}`, address: '10.0.0.1' });
    expect(r.holder(1)).toBe('key:alice');
    expect(r.size).toBe(8);
    expect(refused).toBe(63 * 16 - 7);
    // Another address has its own share; token subjects are not counted per address.
    r.reserve(5000, { identity: 'key:bob', address: '10.0.0.2' });
    for (let i = 0; i < 20; i++) r.reserve(6000 + i, { identity: `sub:user${i}`, address: '10.0.0.1' });
    expect(r.holder(5000)).toBe('key:bob');
    expect(r.holder(6019)).toBe('sub:user19');
    expect(r.size).toBe(8 + 1 + 20);
  });

  it("lets an identity at its address's share replace its own reservations", () => {
    const r = new AwarenessReservations({ perDoc: 1000, perIdentity: 4, perAddress: 4 });
    for (let id = 1; id <= 10; id++) r.reserve(id, { identity: 'key:alice', address: '10.0.0.1' });
    expect([7, 8, 9, 10].map((id) => r.holder(id))).toEqual(['key:alice', 'key:alice', 'key:alice', 'key:alice']);
    expect(r.size).toBe(4);
  });
});
