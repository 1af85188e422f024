import { afterEach, describe, expect, it } from 'vitest';
import { LimitExceededError } from '@capsync/core';
import { LeaseQuota } from '../src/locks/lease-quota.js';

const quotas: LeaseQuota[] = [];
const quota = (max: number) => {
  const q = new LeaseQuota(max);
  quotas.push(q);
  return q;
};
afterEach(() => {
  for (const q of quotas.splice(0)) q.close();
});

describe('LeaseQuota', () => {
  it('counts acquires in flight, so a burst cannot pass the cap before the first grant', () => {
    const q = quota(2);
    q.admit('sub:a');
    q.admit('sub:a');
    expect(() => q.admit('sub:a')).toThrow(LimitExceededError);
    // Per identity: another one has its own quota.
    q.admit('sub:b');
    // A withdrawn acquire frees its slot; a granted one keeps it.
    q.withdrawn('sub:a');
    q.granted('sub:a', 'k1', 1, 60_000);
    q.admit('sub:a');
    expect(() => q.admit('sub:a')).toThrow(/^max-leases-per-identity \(2\)/);
  });

  it('frees a slot on release, on a refused renewal, on expiry, and when the deadline passed unseen', async () => {
    const q = quota(1);
    const grant = (key: string, token: number, ttlMs = 60_000) => {
      q.admit('sub:a');
      q.granted('sub:a', key, token, ttlMs);
    };
    grant('k', 1);
    expect(() => q.admit('sub:a')).toThrow(LimitExceededError);
    q.ended('sub:a', 'k', 1);
    grant('k', 2);
    // Another identity's end of the same key and token changes nothing.
    q.ended('sub:b', 'k', 2);
    expect(() => q.admit('sub:a')).toThrow(LimitExceededError);
    q.expired('k', 2);
    grant('k', 3, 20);
    await new Promise((resolve) => setTimeout(resolve, 30));
    // No event (a forwarding backend emits none): the deadline alone frees it.
    grant('k2', 1);
  });

  it('a renewal moves the deadline', async () => {
    const q = quota(1);
    q.admit('sub:a');
    q.granted('sub:a', 'k', 1, 20);
    q.renewed('sub:a', 'k', 1, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(() => q.admit('sub:a')).toThrow(LimitExceededError);
  });
});
