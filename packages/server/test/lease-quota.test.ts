import { afterEach, describe, expect, it } from 'vitest';
import { LimitExceededError } from '@capsync/core';
import { LeaseQuota } from '../src/locks/lease-quota.js';

const quotas: LeaseQuota[] = [];
const quota = (max: number, maxPerAddress?: number) => {
  const q = new LeaseQuota(max, maxPerAddress);
  quotas.push(q);
  return q;
};
afterEach(() => {
  for (const q of quotas.splice(0)) q.close();
});

describe('LeaseQuota', () => {
  it('counts acquires in flight, so a burst cannot pass the cap before the first grant', () => {
    const q = quota(2);
    q.admit({ identity: 'sub:a' });
    q.admit({ identity: 'sub:a' });
    expect(() => q.admit({ identity: 'sub:a' })).toThrow(LimitExceededError);
    // Per identity: another one has its own quota.
    q.admit({ identity: 'sub:b' });
    // A withdrawn acquire frees its slot; a granted one keeps it.
    q.withdrawn({ identity: 'sub:a' });
    q.granted({ identity: 'sub:a' }, 'k1', 1, 60_000);
    q.admit({ identity: 'sub:a' });
    expect(() => q.admit({ identity: 'sub:a' })).toThrow(/^max-leases-per-identity \(2\)/);
  });

  it('frees a slot on release, on a refused renewal, on expiry, and when the deadline passed unseen', async () => {
    const q = quota(1);
    const grant = (key: string, token: number, ttlMs = 60_000) => {
      q.admit({ identity: 'sub:a' });
      q.granted({ identity: 'sub:a' }, key, token, ttlMs);
    };
    grant('k', 1);
    expect(() => q.admit({ identity: 'sub:a' })).toThrow(LimitExceededError);
    q.ended('sub:a', 'k', 1);
    grant('k', 2);
    // Another identity's end of the same key and token changes nothing.
    q.ended('sub:b', 'k', 2);
    expect(() => q.admit({ identity: 'sub:a' })).toThrow(LimitExceededError);
    q.expired('k', 2);
    grant('k', 3, 20);
    await new Promise((resolve) => setTimeout(resolve, 30));
    // No event (a forwarding backend emits none): the deadline alone frees it.
    grant('k2', 1);
  });

  it('a renewal moves the deadline', async () => {
    const q = quota(1);
    q.admit({ identity: 'sub:a' });
    q.granted({ identity: 'sub:a' }, 'k', 1, 20);
    q.renewed('sub:a', 'k', 1, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(() => q.admit({ identity: 'sub:a' })).toThrow(LimitExceededError);
  });

  it('caps the leases of identities without a sub per address, together, and each identity still by its own cap', () => {
    const q = quota(2, 3);
    const a = { identity: 'key:a', address: '10.0.0.1' };
    const b = { identity: 'key:b', address: '10.0.0.1' };
    q.admit(a);
    q.granted(a, 'k1', 1, 60_000);
    q.admit(a);
    expect(() => q.admit(a)).toThrow(/^max-leases-per-identity \(2\)/);
    q.admit(b);
    // Three from 10.0.0.1 (two held or in flight by a, one by b): a fresh identity there is refused.
    let refusal: unknown;
    try {
      q.admit({ identity: 'conn:c', address: '10.0.0.1' });
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toBeInstanceOf(LimitExceededError);
    expect((refusal as LimitExceededError).limit).toBe('max-leases-per-address');
    expect((refusal as Error).message).toMatch(/^max-leases-per-address \(3\)/);
    // Another address, and identities without an address (a token's sub, a peer's forwarded request), are not counted there.
    q.admit({ identity: 'key:d', address: '10.0.0.2' });
    q.admit({ identity: 'sub:e' });
    // A lease released (by its identity, from wherever) frees the address's slot it was counted in.
    q.ended('key:a', 'k1', 1);
    q.admit({ identity: 'conn:c', address: '10.0.0.1' });
  });

  it('an address slot is freed when the lease runs out unseen, or another identity was granted the key since', async () => {
    const q = quota(10, 1);
    const a = { identity: 'key:a', address: '10.0.0.1' };
    q.admit(a);
    q.granted(a, 'k', 1, 20);
    expect(() => q.admit({ identity: 'key:b', address: '10.0.0.1' })).toThrow(LimitExceededError);
    await new Promise((resolve) => setTimeout(resolve, 30));
    q.admit({ identity: 'key:b', address: '10.0.0.1' });
    q.withdrawn({ identity: 'key:b', address: '10.0.0.1' });
    q.admit(a);
    q.granted(a, 'k', 2, 60_000);
    // The key's next lease (ran out unseen, granted to a sub) ends the one counted here.
    q.admit({ identity: 'sub:x' });
    q.granted({ identity: 'sub:x' }, 'k', 3, 60_000);
    q.admit({ identity: 'key:b', address: '10.0.0.1' });
  });

  it('a renewal to a shorter lease frees the slot at the new deadline', async () => {
    const q = quota(1);
    q.admit({ identity: 'sub:a' });
    q.granted({ identity: 'sub:a' }, 'k', 1, 60_000);
    q.renewed('sub:a', 'k', 1, 20);
    await new Promise((resolve) => setTimeout(resolve, 30));
    q.admit({ identity: 'sub:a' });
  });
});
