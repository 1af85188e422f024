/**
 * Hostile review of issue 12 (lock sessions): a lock-request's `owner` (the identity a
 * forwarding relay acts for) is honoured only from a relay credential. A client's lock session
 * on a socket that poses as a relay (`?relay=<id>`, a relay hello with `relay-id:`) must still
 * act as its own identity: it cannot renew or release another user's lease by naming it, and
 * its own lease of the key is refused while the other holds it.
 */
import { describe, expect, it } from 'vitest';
import { OWNER_KEY_PREFIX, RELAY_CAPABILITY, RELAY_ID_PREFIX, type LockOp, type LockReplyMessage } from '@capsync/core';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient, type MuxDocSession } from '../support/mux-client.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'lock-session-forged-owner';
let nextId = 1;

async function request(s: MuxDocSession, op: LockOp, key: string, token = 0, ttlMs = 0, owner?: string): Promise<LockReplyMessage> {
  const id = nextId++;
  s.sendMessage({ type: 'lock-request', id, op, key, token, ttlMs, waitMs: 0, ...(owner ? { owner } : {}) });
  return s.waitFor(() => s.received.find((m): m is LockReplyMessage => m.type === 'lock-reply' && m.id === id), `the reply to ${op} ${key}`);
}

describe('a lock session posing as a relay', () => {
  it('issue-12 review (lock session forged owner): naming another identity as owner renews or releases nothing of it', async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const alice = await MuxClient.connect(relay.url, { token: await mintToken(SECRET, { sub: 'alice' }) });
    const mallory = await MuxClient.connect(relay.url, {
      token: await mintToken(SECRET, { sub: 'mallory' }),
      query: { relay: 'r9' },
      capabilities: [RELAY_CAPABILITY, RELAY_ID_PREFIX + 'r9', OWNER_KEY_PREFIX + 'm'.repeat(22)],
    });
    const [la, lm] = [alice.open('', { kind: 'locks', sync: false }), mallory.open('', { kind: 'locks', sync: false })];
    expect(await la.waitOpened()).toBe('write');
    expect(await lm.waitOpened()).toBe('write');
    const lease = await request(la, 'acquire', 'forged', 0, 5_000);
    expect(lease.code).toBe('');
    for (const forged of ['sub:alice', 'alice']) {
      expect((await request(lm, 'renew', 'forged', lease.token, 5_000, forged)).code).toBe('not-owner');
      expect((await request(lm, 'release', 'forged', lease.token, 0, forged)).code).toBe('not-owner');
    }
    expect((await request(lm, 'acquire', 'forged', 0, 5_000, 'sub:alice')).code).toBe('lock-timeout');
    // Alice's lease is untouched: she renews and releases it.
    expect((await request(la, 'renew', 'forged', lease.token, 5_000)).code).toBe('');
    expect((await request(la, 'release', 'forged', lease.token)).code).toBe('');
    await Promise.all([alice.close(), mallory.close()]);
  });
});
