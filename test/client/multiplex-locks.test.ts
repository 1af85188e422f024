import { describe, expect, it } from 'vitest';
import type { DocHandle } from '@capsync/client';
import type { CapsyncError } from '@capsync/core';
import { testScope } from '../support/test-scope.js';
import { codeOf } from '../support/error-code.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { metricValue, waitForMetricTo } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';
import { withTimeout } from '../support/wait.js';

/**
 * The lock client rides the client's multiplexed socket as its lock session, beside the
 * documents: one socket to the relay for everything (counted by the relay's
 * `capsync_sockets{endpoint}`), with the lock client's promises unchanged (fail fast with
 * `unavailable` when the relay is gone, fencing tokens, refusals typed). A refused lock session
 * leaves the documents syncing and a refused document leaves the locks working. Without
 * multiplexing (`multiplex: false`, or a relay without the endpoint) the locks keep a socket of
 * their own to the lock endpoint.
 */

const SECRET = 'multiplex-locks-secret';
const { relay, client } = testScope();

type Endpoint = 'mux' | 'doc' | 'locks';

async function sockets(r: RestartableRelay): Promise<Record<Endpoint, number>> {
  const [mux, doc, locks] = await Promise.all((['mux', 'doc', 'locks'] as const).map((endpoint) => metricValue(r.httpUrl, 'capsync_sockets', { endpoint })));
  return { mux: mux!, doc: doc!, locks: locks! };
}

/** Types into a document and waits until the relay has it durably. */
async function edit(h: DocHandle, what: string): Promise<void> {
  h.doc.getText('t').insert(0, what);
  await h.flush();
}

describe('the lock client on the multiplexed socket', () => {
  it('a client with documents and locks holds one socket to the relay', async () => {
    const r = await relay();
    const c = client(r.url);
    const docs = await Promise.all(['a', 'b', 'c'].map((n) => c.open(`shared/${n}`)));
    const lease = await c.locks.acquire('one-socket', { ttlMs: 5_000 });
    await Promise.all(docs.map((h) => edit(h, h.name)));
    expect(await sockets(r)).toEqual({ mux: 1, doc: 0, locks: 0 });
    // Leases and fencing as on the lock endpoint: tokens increase, a second holder waits its turn.
    const other = client(r.url);
    expect(await codeOf(other.locks.acquire('one-socket', { ttlMs: 5_000 }))).toBe('lock-timeout');
    const next = other.locks.acquire('one-socket', { ttlMs: 5_000, waitMs: 5_000 });
    await lease.release();
    expect((await next).token).toBeGreaterThan(lease.token);
    await c.locks.withLock('renewed', async (l) => {
      await l.renew();
      expect(l.valid).toBe(true);
    }, { ttlMs: 1_000 });
    expect(await sockets(r)).toEqual({ mux: 2, doc: 0, locks: 0 });
    // Closing every document leaves the socket to the lock client.
    await Promise.all(docs.map((h) => h.close()));
    await (await c.locks.acquire('after-docs', { ttlMs: 1_000 })).release();
    expect((await sockets(r)).mux).toBe(2);
  });

  it('a lock-only client opens the socket for its lock session, and closing the client closes it', async () => {
    const r = await relay();
    const c = client(r.url);
    expect((await sockets(r)).mux).toBe(0);
    const lease = await c.locks.acquire('lock-only', { ttlMs: 5_000 });
    expect(await sockets(r)).toEqual({ mux: 1, doc: 0, locks: 0 });
    await lease.release();
    await c.close();
    await waitForMetricTo(r.httpUrl, 'capsync_sockets', { endpoint: 'mux' }, (v) => v === 0, '= 0');
  });

  it('keeps a lock socket of its own with multiplex: false, and on a relay without the multiplexed endpoint', async () => {
    const [plain, old] = await Promise.all([relay(), relay(['--mux', 'off'])]);
    for (const [r, options] of [[plain, { multiplex: false }], [old, {}]] as const) {
      const c = client(r.url, options);
      const h = await c.open('doc');
      await edit(h, 'x');
      await (await c.locks.acquire('own-socket', { ttlMs: 1_000 })).release();
      expect(await sockets(r)).toEqual({ mux: 0, doc: 1, locks: 1 });
    }
  });

  it('a refused lock session (no write access to .capsync/locks) fails fast with forbidden; the documents on the socket keep syncing', async () => {
    const r = await relay(['--auth-secret', SECRET]);
    const token = await mintToken(SECRET, { sub: 'reader', docs: { '.capsync/locks': 'read', 'notes/*': 'write' } });
    const c = client(r.url, { token, lockTimeoutMs: 5_000 });
    const h = await c.open('notes/1');
    await edit(h, 'before');
    const started = performance.now();
    expect(await codeOf(c.locks.acquire('k', { ttlMs: 1_000 }))).toBe('forbidden');
    expect(performance.now() - started).toBeLessThan(2_000);
    await edit(h, 'after ');
    expect(h.status).toBe('synced');
    const errors: CapsyncError[] = [];
    h.on('error', (err) => errors.push(err));
    const second = await c.open('notes/2');
    await edit(second, 'more');
    expect(errors).toEqual([]);
    expect(await sockets(r)).toEqual({ mux: 1, doc: 0, locks: 0 });
  });

  it('a refused document leaves the locks working on the same socket', async () => {
    const r = await relay(['--auth-secret', SECRET]);
    const token = await mintToken(SECRET, { sub: 'locker', docs: { '.capsync/locks': 'write', 'mine/*': 'write' } });
    const c = client(r.url, { token });
    const refused = await c.open('theirs/1');
    const error = withTimeout(new Promise<CapsyncError>((resolve) => refused.on('error', resolve)), 10_000, 'the refusal of theirs/1');
    const lease = await c.locks.acquire('still-mine', { ttlMs: 5_000 });
    expect((await error).code).toBe('forbidden');
    await lease.renew();
    await lease.release();
    const ok = await c.open('mine/1');
    await edit(ok, 'fine');
    expect(await sockets(r)).toEqual({ mux: 1, doc: 0, locks: 0 });
  });

  it('the relay dying mid-lease: requests fail fast with unavailable, the lease is lost by its deadline, and locks and documents resume on one new socket', async () => {
    const r = await relay();
    const c = client(r.url, { lockTimeoutMs: 1_000 });
    const holder = client(r.url);
    const h = await c.open('survivor');
    await edit(h, 'before ');
    const lease = await c.locks.acquire('mid-lease', { ttlMs: 2_000 });
    const held = await holder.locks.acquire('busy', { ttlMs: 10_000 });
    // Waiting for a held key (up to 8 s) when the relay goes: answered by the connection's loss, not the deadline.
    const waiting = c.locks.acquire('busy', { ttlMs: 1_000, waitMs: 8_000 }).then(() => null, (err: CapsyncError) => err);
    // The relay has it (the third lock request it received) before it goes.
    await waitForMetricTo(r.httpUrl, 'capsync_messages_in_total', { type: 'lock-request' }, (v) => v >= 3, 'the waiting acquire at the relay');
    const killedAt = performance.now();
    await r.stop('SIGKILL');
    const lost = await waiting;
    expect(lost?.code).toBe('unavailable');
    expect(lost?.message).toMatch(/connection to the relay lost/);
    // Far before its own deadline (8 s wait + 1 s): the socket's close answered it.
    expect(performance.now() - killedAt).toBeLessThan(4_000);
    // While it is down: unavailable by the lock timeout (1 s).
    const renewStarted = performance.now();
    expect(await codeOf(lease.renew())).toBe('unavailable');
    expect(performance.now() - renewStarted).toBeLessThan(2_500);
    if (!lease.signal.aborted) await withTimeout(new Promise((resolve) => lease.signal.addEventListener('abort', resolve, { once: true })), 3_000, 'the lease lost at its deadline');
    expect(lease.valid).toBe(false);

    await r.start();
    const again = await withTimeout(c.locks.acquire('mid-lease', { ttlMs: 1_000, waitMs: 3_000, timeoutMs: 10_000 }), 15_000, 'an acquire after the restart');
    expect(again.token).toBeGreaterThan(lease.token); // tokens never go back across the restart
    await again.release();
    await edit(h, 'after ');
    await held.release().catch(() => {});
    // Both clients back, each on one socket.
    await waitForMetricTo(r.httpUrl, 'capsync_sockets', { endpoint: 'mux' }, (v) => v === 2, '= 2');
    expect(await sockets(r)).toEqual({ mux: 2, doc: 0, locks: 0 });
  });
});
