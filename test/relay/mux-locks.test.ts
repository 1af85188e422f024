import { describe, expect, it } from 'vitest';
import { CloseCode, OWNER_KEY_PREFIX, errorCodeFromReason, type LockOp, type LockReplyMessage, type Message } from '@capsync/core';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient, type MuxDocSession } from '../support/mux-client.js';
import { RawLocks } from '../support/raw-locks.js';
import { metricValue, waitForMetricTo } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';

/**
 * Issue 12 Part 2: the lock session of a multiplexed socket (`session-open` kind 'locks'), at
 * the wire level against a real relay process. It is the lock endpoint's protocol over one
 * session: the same replies, the same ownership (an identity's leases, whichever socket or
 * endpoint it uses), the same bounds, and closing it (or its socket) does what closing a lock
 * connection does. What goes wrong with it closes it alone; the documents on the socket carry on.
 */

const SECRET = 'mux-locks-secret';
const KEY_A = 'a'.repeat(22);
const KEY_B = 'b'.repeat(22);
const owner = (key: string): string[] => [OWNER_KEY_PREFIX + key];

let nextId = 1;

/** Sends one lock request on a lock session and waits for its reply. */
async function request(s: MuxDocSession, op: LockOp, key: string, token = 0, ttlMs = 0, waitMs = 0): Promise<LockReplyMessage> {
  const id = nextId++;
  s.sendMessage({ type: 'lock-request', id, op, key, token, ttlMs, waitMs });
  return s.waitFor(() => s.received.find((m): m is LockReplyMessage => m.type === 'lock-reply' && m.id === id), `the reply to ${op} ${key}`, 10_000 + waitMs);
}

/** Opens the socket's lock session (no sync: it carries no document). */
function openLocks(mux: MuxClient): MuxDocSession {
  return mux.open('', { kind: 'locks', sync: false });
}

describe('lock session of a multiplexed socket', () => {
  it('serves the lock protocol beside the documents on one socket, announced in the socket hello', async () => {
    await using relay = await startAttackedRelay();
    const mux = await MuxClient.connect(relay.url, { capabilities: owner(KEY_A) });
    const hello = await mux.waitHello();
    expect(hello.capabilities).toEqual(expect.arrayContaining(['locks', 'lock-backend:embedded']));
    const doc = await mux.synced('beside-locks');
    const locks = openLocks(mux);
    expect(await locks.waitOpened()).toBe('write');

    const first = await request(locks, 'acquire', 'k', 0, 5_000);
    expect(first.code).toBe('');
    // The relay counts the lease from when it received the request: at least the TTL asked for.
    expect(first.ttlMs).toBeGreaterThanOrEqual(5_000);
    expect((await request(locks, 'acquire', 'k', 0, 5_000)).code).toBe('lock-timeout');
    expect((await request(locks, 'renew', 'k', first.token, 5_000)).code).toBe('');
    expect((await request(locks, 'release', 'k', first.token)).code).toBe('');
    const second = await request(locks, 'acquire', 'k', 0, 5_000);
    expect(second.token).toBeGreaterThan(first.token); // fencing tokens increase
    expect((await request(locks, 'acquire', 'bad\u0001key', 0, 5_000)).code).toBe('invalid-lock-request');
    expect(locks.closeInfo).toBeNull(); // a refused request is a reply, not a close

    doc.type('documents too');
    await doc.waitForAck(doc.seq);
    // No hello on the session: the socket's is its hello.
    expect(locks.received.filter((m) => m.type === 'hello')).toEqual([]);
    expect(await metricValue(relay.httpUrl, 'capsync_sockets', { endpoint: 'mux' })).toBe(1);
    expect(await metricValue(relay.httpUrl, 'capsync_sockets', { endpoint: 'locks' })).toBe(0);
    expect(await metricValue(relay.httpUrl, 'capsync_connections')).toBe(2);
    await mux.close();
    await waitForMetricTo(relay.httpUrl, 'capsync_connections', {}, (v) => v === 0, '= 0');
  });

  it('leases are the identity\'s whatever carries it: another socket or the lock endpoint with the same owner key may release; another key may not', async () => {
    await using relay = await startAttackedRelay();
    const [one, same, other] = await Promise.all([
      MuxClient.connect(relay.url, { capabilities: owner(KEY_A) }),
      MuxClient.connect(relay.url, { capabilities: owner(KEY_A) }),
      MuxClient.connect(relay.url, { capabilities: owner(KEY_B) }),
    ]);
    const [l1, l2, l3] = [openLocks(one), openLocks(same), openLocks(other)];
    const a = await request(l1, 'acquire', 'owned', 0, 5_000);
    const b = await request(l1, 'acquire', 'owned-2', 0, 5_000);
    expect((await request(l3, 'release', 'owned', a.token)).code).toBe('not-owner');
    expect((await request(l3, 'renew', 'owned', a.token, 5_000)).code).toBe('not-owner');
    expect((await request(l2, 'release', 'owned', a.token)).code).toBe('');
    const plain = await RawLocks.open(relay.url, { ownerKey: KEY_A });
    expect(await plain.code('release', 'owned-2', b.token)).toBe('ok');
    plain.close();
    await Promise.all([one.close(), same.close(), other.close()]);
  });

  it('one lock session per socket: a second, or one naming a document, is refused alone (4400); the first and the documents carry on', async () => {
    await using relay = await startAttackedRelay();
    const mux = await MuxClient.connect(relay.url, { capabilities: owner(KEY_A) });
    const doc = await mux.synced('stays');
    const locks = openLocks(mux);
    await locks.waitOpened();
    const second = openLocks(mux);
    expect((await second.waitClosed()).code).toBe(CloseCode.BadMessage);
    const named = mux.open('some-doc', { kind: 'locks', sync: false });
    expect((await named.waitClosed()).code).toBe(CloseCode.BadMessage);
    expect((await request(locks, 'acquire', 'still', 0, 1_000)).code).toBe('');
    doc.type('still');
    await doc.waitForAck(doc.seq);
    // A closed lock session makes room for a new one.
    await locks.close();
    const again = openLocks(mux);
    expect(await again.waitOpened()).toBe('write');
    expect(mux.closeInfo).toBeNull();
    await mux.close();
  });

  it('bad input on the lock session closes it alone; a document message on it, a hello on it (the socket said hello)', async () => {
    await using relay = await startAttackedRelay();
    const mux = await MuxClient.connect(relay.url, { capabilities: owner(KEY_A) });
    const doc = await mux.synced('bystander');
    const bads: Message[] = [
      { type: 'sync-step-1', stateVector: new Uint8Array([0]) },
      { type: 'hello', protocolVersion: 1, capabilities: [] },
    ];
    for (const bad of bads) {
      const locks = openLocks(mux);
      await locks.waitOpened();
      locks.sendMessage(bad);
      const closed = await locks.waitClosed();
      expect(closed.code).toBe(CloseCode.BadMessage);
      expect(errorCodeFromReason(closed.reason)).toBe(bad.type === 'hello' ? 'bad-message' : 'unknown-message-type');
    }
    const garbage = openLocks(mux);
    await garbage.waitOpened();
    garbage.sendRaw(new Uint8Array([0xff, 0xff, 0xff]));
    expect((await garbage.waitClosed()).code).toBe(CloseCode.BadMessage);
    doc.type('unaffected');
    await doc.waitForAck(doc.seq);
    expect(mux.closeInfo).toBeNull();
    await mux.close();
  });

  it('needs write access to .capsync/locks (4403 for the session alone, as the lock endpoint refuses it); the documents keep syncing', async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const token = await mintToken(SECRET, { sub: 'reader', docs: { '.capsync/locks': 'read', 'docs/*': 'write' } });
    const mux = await MuxClient.connect(relay.url, { token });
    const doc = await mux.synced('docs/a');
    const locks = openLocks(mux);
    const closed = await locks.waitClosed();
    expect(closed.code).toBe(CloseCode.Forbidden);
    expect(errorCodeFromReason(closed.reason)).toBe('forbidden');
    doc.type('after the refusal');
    await doc.waitForAck(doc.seq);
    expect(mux.closeInfo).toBeNull();
    // A token with the permission gets its lock session; its leases are its `sub`'s.
    const writer = await MuxClient.connect(relay.url, { token: await mintToken(SECRET, { sub: 'writer' }) });
    const theirs = openLocks(writer);
    expect(await theirs.waitOpened()).toBe('write');
    const lease = await request(theirs, 'acquire', 'by-sub', 0, 5_000);
    const plain = await RawLocks.open(relay.url, { token: await mintToken(SECRET, { sub: 'writer' }) });
    expect(await plain.code('release', 'by-sub', lease.token)).toBe('ok');
    plain.close();
    await Promise.all([mux.close(), writer.close()]);
  });

  it('--max-leases-per-identity holds across lock sessions and sockets of one identity (not multiplied by opening more)', async () => {
    await using relay = await startAttackedRelay(['--max-leases-per-identity', '2']);
    const [one, two] = await Promise.all([
      MuxClient.connect(relay.url, { capabilities: owner(KEY_A) }),
      MuxClient.connect(relay.url, { capabilities: owner(KEY_A) }),
    ]);
    const [l1, l2] = [openLocks(one), openLocks(two)];
    expect((await request(l1, 'acquire', 'q1', 0, 5_000)).code).toBe('');
    expect((await request(l2, 'acquire', 'q2', 0, 5_000)).code).toBe('');
    const over = await request(l2, 'acquire', 'q3', 0, 5_000);
    expect(over.code).toBe('limit-exceeded');
    expect(over.message).toMatch(/max-leases-per-identity/);
    await l1.close();
    const l3 = openLocks(one);
    expect((await request(l3, 'acquire', 'q4', 0, 5_000)).code).toBe('limit-exceeded');
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-leases-per-identity' })).toBe(2);
    await Promise.all([one.close(), two.close()]);
  });

  it('--max-leases-per-address holds across sockets with fresh owner keys (an owner key costs nothing to make)', async () => {
    await using relay = await startAttackedRelay(['--max-leases-per-address', '2']);
    const keys = ['d', 'e', 'f'].map((c) => c.repeat(22));
    const sockets = await Promise.all(keys.map((key) => MuxClient.connect(relay.url, { capabilities: owner(key) })));
    const [l1, l2, l3] = sockets.map(openLocks);
    expect((await request(l1!, 'acquire', 'addr-1', 0, 5_000)).code).toBe('');
    expect((await request(l2!, 'acquire', 'addr-2', 0, 5_000)).code).toBe('');
    const over = await request(l3!, 'acquire', 'addr-3', 0, 5_000);
    expect([over.code, over.message]).toEqual(['limit-exceeded', expect.stringMatching(/max-leases-per-address/)]);
    // The lock endpoint counts against the same address.
    const plain = await RawLocks.open(relay.url, { ownerKey: 'g'.repeat(22) });
    expect(await plain.code('acquire', 'addr-4', 0, 5_000)).toBe('limit-exceeded');
    plain.close();
    await Promise.all(sockets.map((s) => s.close()));
  });

  for (const how of ['the session', 'the socket'] as const) {
    it(`closing ${how} withdraws its waiting acquire and keeps the identity's lease, as closing a lock connection does`, async () => {
      await using relay = await startAttackedRelay();
      const holder = await MuxClient.connect(relay.url, { capabilities: owner(KEY_A) });
      const waiter = await MuxClient.connect(relay.url, { capabilities: owner(KEY_B) });
      const held = openLocks(holder);
      const waiting = openLocks(waiter);
      const doc = await waiter.synced('waiter-doc');
      const lease = await request(held, 'acquire', 'contended', 0, 30_000);
      const id = nextId++;
      waiting.sendMessage({ type: 'lock-request', id, op: 'acquire', key: 'contended', token: 0, ttlMs: 30_000, waitMs: 20_000 });
      await waitForMetricTo(relay.httpUrl, 'capsync_connections', {}, (v) => v === 3, '= 3');
      if (how === 'the session') await waiting.close();
      else await waiter.close();
      await waitForMetricTo(relay.httpUrl, 'capsync_connections', {}, (v) => v === (how === 'the session' ? 2 : 1), 'the lock connection gone');
      if (how === 'the session') {
        doc.type('the socket stays');
        await doc.waitForAck(doc.seq);
      }
      // Closing the holder's session keeps the lease: it is the identity's, released from a new session.
      await held.close();
      const back = openLocks(holder);
      expect((await request(back, 'release', 'contended', lease.token)).code).toBe('');
      // The withdrawn waiter was not granted the key on the release: a third party gets it at once.
      const third = await MuxClient.connect(relay.url, { capabilities: owner('c'.repeat(22)) });
      const next = await request(openLocks(third), 'acquire', 'contended', 0, 5_000);
      expect(next.code).toBe('');
      expect(next.token).toBeGreaterThan(lease.token);
      await Promise.all([holder.close(), waiter.close(), third.close()]);
    });
  }
});
