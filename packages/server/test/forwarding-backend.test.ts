/**
 * ForwardingLockBackend against a real relay (createRelay on port 0) whose embedded backend is
 * the authority: every operation answered by the authority, FIFO shared with its own waiters,
 * deadlines while it is down or silent (through a TCP fault proxy), late grants given back,
 * auth with the mesh's relay credential, and credential rotation.
 */
import { EventEmitter } from 'node:events';
import * as jose from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { LeaseLostError, LockTimeoutError, StaleTokenError, UnavailableError, isCapsyncError } from '@capsync/core';
import { RELAY_CLAIM, relayCredential } from '../src/auth/relay-credential.js';
import { createRelay, type RelayHandle } from '../src/create-relay.js';
import { ForwardingLockBackend, type ForwardingLockBackendOptions } from '../src/locks/forwarding-backend.js';
import type { AcquireRequest, LockBackend } from '../src/locks/lock-backend.js';
import { createLogger } from '../src/logger.js';
import { FaultProxy } from '../../../test/support/fault-proxy.js';
import { waitForEvent } from '../../../test/support/wait.js';

const logger = createLogger('silent');
/**
 * The mesh's shared token: the authority honours the identity a forwarder names in its
 * requests only on a link with a relay credential.
 */
const PEER_TOKEN = 'forwarding-test-peer-token';
const req = (key: string, ttlMs = 5_000, waitMs = 0, signal?: AbortSignal): AcquireRequest => ({ key, ttlMs, waitMs, owner: 'test', ...(signal ? { signal } : {}) });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (isCapsyncError(err)) return err.code;
    throw err;
  }
}

/** How a promise settles, and how long it took. */
async function timed(p: Promise<unknown>): Promise<{ code: string; ms: number; err: unknown }> {
  const started = performance.now();
  try {
    await p;
    return { code: 'ok', ms: performance.now() - started, err: undefined };
  } catch (err) {
    if (!isCapsyncError(err)) throw err;
    return { code: err.code, ms: performance.now() - started, err };
  }
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function authority(options: Parameters<typeof createRelay>[0] = {}): Promise<RelayHandle> {
  const relay = await createRelay({ port: 0, storage: 'memory', lockTimeoutMs: 2_000, peerToken: PEER_TOKEN, ...options });
  cleanups.push(() => relay.close());
  return relay;
}

async function forwarder(url: string, options: Partial<ForwardingLockBackendOptions> = {}): Promise<ForwardingLockBackend> {
  const b = await ForwardingLockBackend.connect({ url, token: async () => PEER_TOKEN, opTimeoutMs: 1_000, logger, relayId: 'test-relay', ...options });
  cleanups.push(() => b.close());
  return b;
}

async function proxy(port: number, mode: 'pass' | 'hold' | 'reset' = 'pass'): Promise<FaultProxy> {
  const p = await FaultProxy.start(port, { mode });
  cleanups.push(() => p.close());
  return p;
}

function whenUp(b: ForwardingLockBackend, timeoutMs = 5_000): Promise<true> {
  return waitForEvent(b.link, 'up', () => b.connected, 'the link to the lock authority to be up', timeoutMs);
}

/** Emits 'acquire' / 'release' on `calls` each time the authority's backend is asked (after it queued the request). */
function spy(backend: LockBackend): { calls: EventEmitter; acquires: AcquireRequest[]; releases: number[] } {
  const calls = new EventEmitter();
  const acquires: AcquireRequest[] = [];
  const releases: number[] = [];
  const acquire = backend.acquire.bind(backend);
  const release = backend.release.bind(backend);
  backend.acquire = (r) => {
    const p = acquire(r);
    acquires.push(r);
    calls.emit('acquire');
    return p;
  };
  backend.release = (key, token, owner) => {
    const p = release(key, token, owner);
    releases.push(token);
    calls.emit('release');
    return p;
  };
  return { calls, acquires, releases };
}

describe('ForwardingLockBackend', () => {
  it('forwards acquire, renew, check and release to the authority; refusals come back typed', async () => {
    const a = await authority();
    const direct = a.relay.locks.backend;
    const f = await forwarder(a.url);
    expect(f.kind).toBe('forwarded');
    const g1 = await f.acquire(req('k', 5_000));
    expect(g1.token).toBeGreaterThan(0);
    expect(g1.ttlMs).toBeGreaterThanOrEqual(5_000);
    // The authority holds it: its own clients are refused, and it knows the token.
    await direct.check('k', g1.token, 'test');
    expect(await codeOf(direct.acquire(req('k')))).toBe('lock-timeout');
    await expect(f.acquire(req('k'))).rejects.toBeInstanceOf(LockTimeoutError);
    const renewed = await f.renew('k', g1.token, 3_000, 'test');
    expect(renewed).toMatchObject({ key: 'k', token: g1.token, ttlMs: 3_000 });
    await f.check('k', g1.token, 'test');
    await expect(f.check('k', g1.token + 1, 'test')).rejects.toBeInstanceOf(LeaseLostError);
    await f.release('k', g1.token, 'test');
    await expect(f.release('k', g1.token, 'test')).rejects.toBeInstanceOf(LeaseLostError);
    await expect(f.renew('k', g1.token, 1_000, 'test')).rejects.toBeInstanceOf(LeaseLostError);
    // Tokens come from the authority's one sequence, whoever asks.
    const g2 = await direct.acquire(req('k'));
    expect(g2.token).toBeGreaterThan(g1.token);
    await expect(f.check('k', g1.token, 'test')).rejects.toBeInstanceOf(StaleTokenError);
    await direct.release('k', g2.token, 'test');
    const g3 = await f.acquire(req('k'));
    expect(g3.token).toBeGreaterThan(g2.token);
    await f.release('k', g3.token, 'test');
  });

  it('shares the authority queue: waiters from two forwarders and the authority are served in arrival order', async () => {
    const a = await authority();
    const direct = a.relay.locks.backend;
    const { calls, acquires } = spy(direct);
    const f1 = await forwarder(a.url);
    const f2 = await forwarder(a.url);
    const held = await direct.acquire(req('fifo'));
    const order: string[] = [];
    const tokens: number[] = [held.token];
    const queued = (n: number) => waitForEvent(calls, 'acquire', () => acquires.length >= n, `${n} acquires at the authority`);
    const waiter = (name: string, b: LockBackend) =>
      b.acquire(req('fifo', 5_000, 10_000)).then(async (g) => {
        order.push(name);
        tokens.push(g.token);
        await b.release('fifo', g.token, 'test');
      });
    const w: Promise<void>[] = [];
    w.push(waiter('f1', f1));
    await queued(2);
    w.push(waiter('direct', direct));
    await queued(3);
    w.push(waiter('f2', f2));
    await queued(4);
    w.push(waiter('f1-again', f1));
    await queued(5);
    await direct.release('fifo', held.token, 'test');
    await Promise.all(w);
    expect(order).toEqual(['f1', 'direct', 'f2', 'f1-again']);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]!);
  });

  it('connect does not wait for a down authority; requests answer unavailable at their deadline, and wait for the link within it', async () => {
    const a = await authority();
    const p = await proxy(a.port, 'reset');
    const started = performance.now();
    const f = await forwarder(p.url, { opTimeoutMs: 600 });
    expect(performance.now() - started).toBeLessThan(100);
    expect(f.connected).toBe(false);
    for (const op of [() => f.acquire(req('down')), () => f.renew('down', 1, 1_000, 'test'), () => f.check('down', 1, 'test'), () => f.release('down', 1, 'test')]) {
      const r = await timed(op());
      expect(r.code).toBe('unavailable');
      expect((r.err as Error).message).toMatch(/unreachable/);
      expect(r.ms).toBeGreaterThanOrEqual(590);
      expect(r.ms).toBeLessThan(600 + 250);
    }
    // An acquire made while the link is down is sent once it comes up, inside its deadline.
    const pending = f.acquire(req('down', 5_000, 0));
    p.setMode('pass');
    const g = await pending;
    expect(g.token).toBeGreaterThan(0);
    await f.release('down', g.token, 'test');
  });

  it('notices a half-open link with ping frames, answers unavailable meanwhile, and recovers after the heal', async () => {
    const a = await authority();
    const p = await proxy(a.port);
    const f = await forwarder(p.url, { opTimeoutMs: 400, heartbeatMs: 100 });
    await whenUp(f);
    const lease = await f.acquire(req('half-open', 10_000));
    let downAt = 0;
    f.link.once('down', () => (downAt = performance.now()));
    p.setMode('hold');
    const heldAt = performance.now();
    const down = waitForEvent(f.link, 'down', () => downAt > 0, 'the silent link to be dropped', 5_000);
    for (const op of [() => f.renew('half-open', lease.token, 10_000, 'test'), () => f.check('half-open', lease.token, 'test'), () => f.acquire(req('other'))]) {
      const r = await timed(op());
      expect(r.code).toBe('unavailable');
      expect(r.ms).toBeLessThan(400 + 250);
    }
    await down;
    // Silence for opTimeoutMs + a heartbeat, noticed at the next heartbeat.
    expect(downAt - heldAt).toBeLessThan(400 + 2 * 100 + 300);
    p.setMode('pass');
    await whenUp(f);
    // The lease lives at the authority, not in the link: still current, renewable, releasable.
    await f.renew('half-open', lease.token, 10_000, 'test');
    await f.release('half-open', lease.token, 'test');
  });

  it('releases a grant whose requester gave up (aborted, or past its deadline) so it does not block the key', async () => {
    const a = await authority();
    const direct = a.relay.locks.backend;
    const { calls, acquires, releases } = spy(direct);
    const f = await forwarder(a.url);
    // Aborted while waiting at the authority.
    const held = await direct.acquire(req('late', 30_000));
    const abort = new AbortController();
    const abandoned = f.acquire(req('late', 30_000, 20_000, abort.signal));
    await waitForEvent(calls, 'acquire', () => acquires.length >= 2, 'the forwarded acquire to wait at the authority');
    abort.abort();
    expect(await codeOf(abandoned)).toBe('unavailable');
    const next = direct.acquire(req('late', 30_000, 20_000));
    const releasedAt = performance.now();
    await direct.release('late', held.token, 'test');
    // The abandoned waiter was first in line: it was granted, and given back at once.
    const g = await next;
    expect(performance.now() - releasedAt).toBeLessThan(1_000);
    expect(releases).toContain(g.token - 1);
    await direct.release('late', g.token, 'test');

    // Past its deadline: the authority answers only after a heal (a held link delivers late).
    const p = await proxy(a.port);
    const slow = await forwarder(p.url, { opTimeoutMs: 300, heartbeatMs: 60_000 });
    await whenUp(slow);
    p.setMode('hold');
    expect(await codeOf(slow.acquire(req('late2', 30_000)))).toBe('unavailable');
    const before = releases.length;
    p.setMode('pass');
    await waitForEvent(calls, 'release', () => releases.length > before, 'the late grant to be released at the authority');
    const again = await direct.acquire(req('late2', 30_000));
    expect(again.token).toBe(releases.at(-1)! + 1);
    await direct.release('late2', again.token, 'test');
  });

  it('presents the relay credential; a relay with the wrong secret is refused: unavailable, at once', async () => {
    const secret = 'mesh-secret-that-is-long-enough';
    const a = await authority({ authSecret: secret });
    const cred = (s: string, relayId: string) => relayCredential({ peerToken: undefined, authSecret: s, authIssuer: undefined, authAudience: undefined, relayId, maxTokenLifetimeMs: 24 * 3600_000 });
    const ok = await forwarder(a.url, { token: cred(secret, 'good') });
    const g = await ok.acquire(req('auth'));
    await ok.release('auth', g.token, 'test');

    const bad = await forwarder(a.url, { token: cred('another-secret-that-is-long-enough', 'bad') });
    const first = await timed(bad.acquire(req('auth')));
    expect(first.code).toBe('unavailable');
    expect((first.err as Error).message).toMatch(/refused this relay's credential/);
    expect(first.ms).toBeLessThan(1_000);
    const second = await timed(bad.check('auth', 1, 'test'));
    expect(second.code).toBe('unavailable');
    expect(second.ms).toBeLessThan(50);

    const none = await forwarder(a.url);
    expect(await codeOf(none.acquire(req('auth')))).toBe('unavailable');
  });

  it('refuses to forward to a relay that forwards its own locks (a loop)', async () => {
    const a = await authority();
    const middle = await authority({ lockAuthority: a.url });
    expect(middle.relay.locks.backend.kind).toBe('forwarded');
    const f = await forwarder(middle.url);
    const r = await timed(f.acquire(req('loop')));
    expect(r.code).toBe('unavailable');
    expect((r.err as Error).message).toMatch(/forwards its own lock requests/);
    // The middle relay itself forwards fine.
    const g = await middle.relay.locks.backend.acquire(req('loop'));
    await a.relay.locks.backend.check('loop', g.token, 'test');
  });

  it('rotates the link before its credential expires, without failing a request in flight', async () => {
    const secret = 'rotation-secret-that-is-long-enough';
    const a = await authority({ authSecret: secret });
    const direct = a.relay.locks.backend;
    const { calls, acquires } = spy(direct);
    const key = new TextEncoder().encode(secret);
    let minted = 0;
    // Relay credentials (the authority acts for the identities they name) that live 3 to 4 s
    // (exp is in whole seconds): rotated after about three quarters.
    const token = async () => {
      minted++;
      return new jose.SignJWT({ docs: { '*': 'write' }, [RELAY_CLAIM]: true })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime(Math.floor(Date.now() / 1000) + 4)
        .sign(key);
    };
    const f = await forwarder(a.url, { token });
    await whenUp(f);
    const held = await direct.acquire(req('rotate', 30_000));
    const waiting = f.acquire(req('rotate', 5_000, 20_000));
    await waitForEvent(calls, 'acquire', () => acquires.length >= 2, 'the forwarded acquire to wait at the authority');
    let rotations = 0;
    let downs = 0;
    f.link.on('rotated', () => rotations++);
    f.link.on('down', () => downs++);
    await waitForEvent(f.link, 'rotated', () => rotations > 0, 'the link to rotate', 6_000);
    expect(minted).toBeGreaterThanOrEqual(2);
    // The old link drains: the waiting acquire, sent on it, is still answered.
    await direct.release('rotate', held.token, 'test');
    const g = await waiting;
    await f.release('rotate', g.token, 'test');
    const again = await f.acquire(req('rotate'));
    await f.release('rotate', again.token, 'test');
    expect(downs).toBe(0);
    expect(f.connected).toBe(true);
  }, 15_000);

  it('reconnects with the one Backoff while the authority is down (full jitter, doubling to the cap), and is up again soon after it restarts', async () => {
    const first = await authority();
    const p = await proxy(first.port);
    // Jitter pinned just under 1: each delay is its bound, 39, 79, 159, then the cap (319).
    const f = await forwarder(p.url, { reconnect: { baseMs: 40, maxMs: 320 }, random: () => 0.999 });
    await whenUp(f);
    const attempts: number[] = [];
    p.on('connection', () => attempts.push(performance.now()));
    p.setMode('reset');
    await first.close();
    await waitForEvent(p, 'connection', () => attempts.length >= 6, 'six attempts while the authority is down', 5_000);
    const gaps = attempts.slice(1, 6).map((t, i) => t - attempts[i]!);
    const expected = [79, 159, 319, 319, 319];
    for (const [i, gap] of gaps.entries()) {
      expect(gap, `gap ${i}: ${gaps.map(Math.round).join(', ')} ms`).toBeGreaterThanOrEqual(expected[i]! - 5);
      expect(gap, `gap ${i}: ${gaps.map(Math.round).join(', ')} ms`).toBeLessThan(expected[i]! + 150);
    }
    expect(await codeOf(f.check('restart', 1, 'test'))).toBe('unavailable');
    // The authority is back (a new process on another port, behind the same address).
    const restarted = await authority();
    p.setTarget(restarted.port);
    p.setMode('pass');
    const downSince = performance.now();
    await whenUp(f, 2_000);
    expect(performance.now() - downSince).toBeLessThan(320 + 250);
    const g = await f.acquire(req('restart'));
    await restarted.relay.locks.backend.check('restart', g.token, 'test');
    await f.release('restart', g.token, 'test');
  });

  it('close rejects what is pending with unavailable and stops reconnecting', async () => {
    const a = await authority();
    const p = await proxy(a.port, 'reset');
    const f = await forwarder(p.url, { opTimeoutMs: 5_000 });
    const pending = f.acquire(req('closing'));
    await f.close();
    const r = await timed(pending);
    expect(r.code).toBe('unavailable');
    expect(r.ms).toBeLessThan(100);
    await expect(f.check('closing', 1, 'test')).rejects.toBeInstanceOf(UnavailableError);
  });
});
