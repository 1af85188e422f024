/**
 * Several relays, one lock authority: relay F started with `lockAuthority` (CLI
 * `--lock-authority`) forwards every lock operation and every fencing check to relay A, whose
 * embedded backend is the only authority. Clients on both relays contend for the same keys
 * (one holder, tokens increasing across relays, one FIFO queue); cp.set on F is fenced by A;
 * F cut off from A (through a TCP fault proxy: reset, hold) answers unavailable within its
 * deadline and works again after the heal; F authenticates to A with the mesh's relay
 * credential, and a relay with the wrong secret is refused. Then with real processes: the CLI
 * flag, and A killed and restarted under F; and the seeded nemesis run through F.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type CapsyncClient, type ClientOptions, type Lease, type WebSocketConstructor } from '@capsync/client';
import { OWNER_KEY_PREFIX, decodeMessage, encodeMessage, isCapsyncError, type Message } from '@capsync/core';
import type { AcquireRequest } from '@capsync/server';
import { TEST_CLIENT_DEFAULTS, nextTurn } from '../support/client-fixture.js';
import { codeOf } from '../support/error-code.js';
import { assertLinearizable, lockModel } from '../support/linearizability/index.js';
import { runLockChaos } from '../support/lock-chaos.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { testSeed } from '../support/seeded-random.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { waitForEvent } from '../support/wait.js';

/** F's deadline to reach A; clients allow more, so the relay's answer is what they see. */
const LOCK_TIMEOUT_MS = 500;
/** The open relays' shared peer token: the authority acts for the identities a forwarder names only with it. */
const PEER_TOKEN = 'forwarded-locks-peer-token';
/** How much later than its deadline an unavailable answer may come (timers, a loaded machine). */
const MARGIN_MS = 300;

const clients: CapsyncClient[] = [];
function client(url: string, options: Partial<ClientOptions> = {}): CapsyncClient {
  const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS, lockTimeoutMs: 2_000, ...options });
  clients.push(c);
  return c;
}

/** How a promise settled (capsync error code or 'ok') and how long it took. */
async function timed(p: Promise<unknown>): Promise<{ code: string; ms: number; message: string }> {
  const started = performance.now();
  try {
    await p;
    return { code: 'ok', ms: performance.now() - started, message: '' };
  } catch (err) {
    if (!isCapsyncError(err)) throw err;
    return { code: err.code, ms: performance.now() - started, message: err.message };
  }
}

/** Resolves once `check()` holds, re-checked on each `event` of `emitter` (a Y.Doc's 'update', say). */
function until(emitter: { on(e: string, f: () => void): void; off(e: string, f: () => void): void }, event: string, check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const onEvent = () => {
      if (!check()) return;
      clearTimeout(timer);
      emitter.off(event, onEvent);
      resolve();
    };
    emitter.on(event, onEvent);
  });
}

/** The forwarding backend's link events (the class is internal to @capsync/server). */
interface ForwardingView {
  kind: string;
  connected: boolean;
  link: EventEmitter;
}
function forwarding(relay: TestRelay): ForwardingView {
  const backend = relay.relay.locks.backend as unknown as ForwardingView;
  expect(backend.kind).toBe('forwarded');
  return backend;
}
function whenLinkUp(relay: TestRelay, timeoutMs = 5_000): Promise<true> {
  const b = forwarding(relay);
  return waitForEvent(b.link, 'up', () => b.connected, 'the forwarding relay to reach the lock authority', timeoutMs);
}

/** Emits 'acquire' once the authority's backend has queued (or granted) an acquire. */
function countAcquires(relay: TestRelay): { calls: EventEmitter; count: () => number } {
  const backend = relay.relay.locks.backend;
  const calls = new EventEmitter();
  let n = 0;
  const acquire = backend.acquire.bind(backend);
  backend.acquire = (r: AcquireRequest) => {
    const p = acquire(r);
    n++;
    calls.emit('acquire');
    return p;
  };
  return { calls, count: () => n };
}

/** A bare document connection, to send fenced writes the client library would refuse to send. */
async function rawDoc(url: string, ownerKey?: string) {
  const ws = new WebSocket(url);
  const waiters = new Map<number, (m: Message) => void>();
  ws.on('message', (data: Buffer) => {
    const msg = decodeMessage(new Uint8Array(data));
    if (msg.type === 'cp-reply') waiters.get(msg.id)?.(msg);
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(encodeMessage({ type: 'hello', protocolVersion: 1, capabilities: ['ack', 'error', 'cp', ...(ownerKey ? [OWNER_KEY_PREFIX + ownerKey] : [])] }));
  let nextId = 1;
  return {
    cpSet: (key: string, token: number, value: unknown): Promise<string> => {
      const id = nextId++;
      const reply = new Promise<Message>((resolve) => waiters.set(id, resolve));
      ws.send(encodeMessage({ type: 'cp-set', id, key, token, json: JSON.stringify(value) }));
      return reply.then((m) => (m.type === 'cp-reply' ? m.code || 'ok' : 'none'));
    },
    close: () => ws.close(),
  };
}

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

describe('two relays, one lock authority', () => {
  let authority: TestRelay;
  /** F reaches A only through it. */
  let proxy: FaultProxy;
  let forwarder: TestRelay;
  let acquires: ReturnType<typeof countAcquires>;

  beforeAll(async () => {
    authority = await startRelay({ lockTimeoutMs: LOCK_TIMEOUT_MS, relayId: 'A', peerToken: PEER_TOKEN });
    acquires = countAcquires(authority);
    proxy = await FaultProxy.start(authority.port);
    forwarder = await startRelay({ lockAuthority: proxy.url, lockTimeoutMs: LOCK_TIMEOUT_MS, relayId: 'F', peerToken: PEER_TOKEN });
    await whenLinkUp(forwarder);
  });
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await forwarder?.dispose();
    await proxy?.close();
    await authority?.dispose();
  });

  it('clients on both relays contend for one key: one holder at a time, tokens increasing across relays', async () => {
    const contenders = [client(authority.url), client(authority.url), client(forwarder.url), client(forwarder.url)];
    const rounds = 5;
    let holder: number | null = null;
    const grants: { token: number; by: number }[] = [];
    await Promise.all(
      contenders.map(async (c, by) => {
        for (let i = 0; i < rounds; i++) {
          const lease = await c.locks.acquire('contended', { ttlMs: 5_000, waitMs: 20_000 });
          expect(holder).toBeNull();
          holder = lease.token;
          grants.push({ token: lease.token, by });
          // Hold it across a few turns of the event loop, so the others' requests interleave.
          for (let t = 0; t < 3; t++) await nextTurn();
          holder = null;
          await lease.release();
        }
      }),
    );
    expect(grants).toHaveLength(contenders.length * rounds);
    for (let i = 1; i < grants.length; i++) expect(grants[i]!.token).toBeGreaterThan(grants[i - 1]!.token);
    // Both relays' clients got the lock.
    expect(new Set(grants.map((g) => (g.by < 2 ? 'A' : 'F')))).toEqual(new Set(['A', 'F']));
  });

  it('waiters are served first come, first served across relays; a release on one relay frees the key for the other', async () => {
    const a1 = client(authority.url);
    const a2 = client(authority.url);
    const f1 = client(forwarder.url);
    const f2 = client(forwarder.url);
    const held = await a1.locks.acquire('fifo', { ttlMs: 10_000 });
    const order: string[] = [];
    const tokens = [held.token];
    const waiter = (name: string, c: CapsyncClient) =>
      c.locks.acquire('fifo', { ttlMs: 10_000, waitMs: 20_000 }).then(async (lease) => {
        order.push(name);
        tokens.push(lease.token);
        await lease.release();
      });
    const queued = (n: number) => waitForEvent(acquires.calls, 'acquire', () => acquires.count() >= n, `${n} acquires at the authority`);
    const base = acquires.count();
    const all = [waiter('f1', f1)];
    await queued(base + 1);
    all.push(waiter('a2', a2));
    await queued(base + 2);
    all.push(waiter('f2', f2));
    await queued(base + 3);
    all.push(waiter('a1', a1));
    await queued(base + 4);
    await held.release();
    await Promise.all(all);
    expect(order).toEqual(['f1', 'a2', 'f2', 'a1']);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]!);
  });

  it('cp.set on the forwarding relay is fenced by the authority: a stale or unknown token is refused', async () => {
    // The raw connection is client `a` (its owner key), on the other relay.
    const ownerKey = randomBytes(16).toString('base64url');
    const f = client(forwarder.url, { ownerKey });
    const a = client(authority.url, { ownerKey });
    const h = await f.open('forwarded-shop');
    const l1 = await f.locks.acquire('stock/1', { ttlMs: 10_000 });
    await h.cp.set('stock/1', 10, l1);
    expect(h.cp.get('stock/1')).toBe(10);
    const raw = await rawDoc(`${forwarder.url}/forwarded-shop`, ownerKey);
    const stranger = await rawDoc(`${forwarder.url}/forwarded-shop`);
    expect(await stranger.cpSet('stock/1', l1.token, 99)).toBe('not-owner'); // the current token, another identity
    expect(await raw.cpSet('stock/1', l1.token + 1, 99)).toBe('lease-lost'); // a token nobody holds
    await l1.release();
    expect(await raw.cpSet('stock/1', l1.token, 99)).toBe('lease-lost'); // released
    // A newer lease, taken on the other relay: the old token is stale on F too.
    const l2 = await a.locks.acquire('stock/1', { ttlMs: 10_000 });
    expect(await raw.cpSet('stock/1', l1.token, 99)).toBe('stale-token');
    expect(await raw.cpSet('stock/1', l2.token, 9)).toBe('ok');
    // (Written through another connection: the change reaches this replica on its own.)
    await until(h.doc, 'update', () => h.cp.get('stock/1') === 9, 'the fenced value to reach the client on F');
    expect(h.cp.entry('stock/1')).toMatchObject({ value: 9, token: l2.token });
    await l2.release();
    raw.close();
    stranger.close();
  });

  for (const mode of ['reset', 'hold'] as const) {
    it(`cut off from the authority (${mode}): acquire, renew and cp.set answer unavailable within the deadline; after the heal it works again`, async () => {
      const f = client(forwarder.url);
      const a = client(authority.url);
      const h = await f.open(`cut-${mode}`);
      const lease = await f.locks.acquire(`cut-${mode}`, { ttlMs: 10_000 });
      const toRelease = await f.locks.acquire(`released-${mode}`, { ttlMs: 10_000 });
      await h.cp.set(`cut-${mode}`, 1, lease);
      proxy.setMode(mode);
      // Reset: F sees its link die and queues requests for the next one (up to their deadline).
      // Hold: F's link stays open, silent; requests go out and get no answer.
      const link = forwarding(forwarder);
      if (mode === 'reset') await waitForEvent(link.link, 'down', () => !link.connected, 'F to notice the reset');
      const timings: string[] = [];
      try {
        const ops: [string, () => Promise<unknown>][] = [
          ['acquire', () => f.locks.acquire(`other-${mode}`, { ttlMs: 1_000 })],
          ['acquire (waitMs 200)', () => f.locks.acquire(`other-${mode}`, { ttlMs: 1_000, waitMs: 200 })],
          ['renew', () => lease.renew()],
          ['cp.set', () => h.cp.set(`cut-${mode}`, 2, lease)],
          ['release', () => toRelease.release()],
          ['acquire of a held key', () => f.locks.acquire(`cut-${mode}`, { ttlMs: 1_000 })],
        ];
        for (const [name, op] of ops) {
          const r = await timed(op());
          timings.push(`${name} ${r.code} in ${r.ms.toFixed(0)} ms`);
          expect(r.code, name).toBe('unavailable');
          const deadline = LOCK_TIMEOUT_MS + (name.includes('waitMs 200') ? 200 : 0);
          expect(r.ms, name).toBeLessThan(deadline + MARGIN_MS);
        }
        // The authority itself goes on, and F's lease is still held there.
        expect(await codeOf(a.locks.acquire(`cut-${mode}`, { ttlMs: 1_000 }))).toBe('lock-timeout');
      } finally {
        console.log(`forwarding relay cut off (${mode}): ${timings.join(', ')}`);
        proxy.setMode('pass');
      }
      if (!forwarding(forwarder).connected) await whenLinkUp(forwarder);
      await lease.renew();
      await h.cp.set(`cut-${mode}`, 3, lease);
      expect(h.cp.get(`cut-${mode}`)).toBe(3);
      await lease.release();
      const next = await f.locks.acquire(`cut-${mode}`, { ttlMs: 1_000 });
      expect(next.token).toBeGreaterThan(lease.token);
      await next.release();
    });
  }
});

describe('auth between relays', () => {
  const secret = 'forwarded-locks-mesh-secret';
  const relays: TestRelay[] = [];
  const sign = (s: string) => new SignJWT({ docs: { '*': 'write' } }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(s));
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    for (const r of relays.reverse()) await r.dispose();
  });

  it("the forwarding relay's credential (minted from the shared secret) is accepted; a relay with another secret is refused with unavailable", async () => {
    const authority = await startRelay({ authSecret: secret, lockTimeoutMs: LOCK_TIMEOUT_MS });
    relays.push(authority);
    const good = await startRelay({ authSecret: secret, lockAuthority: authority.url, lockTimeoutMs: LOCK_TIMEOUT_MS, relayId: 'good' });
    relays.push(good);
    const wrong = 'not-the-mesh-secret';
    const bad = await startRelay({ authSecret: wrong, lockAuthority: authority.url, lockTimeoutMs: LOCK_TIMEOUT_MS, relayId: 'bad' });
    relays.push(bad);

    const g = client(good.url, { token: await sign(secret) });
    const lease = await g.locks.acquire('authed', { ttlMs: 5_000 });
    const h = await g.open('authed-doc');
    await h.cp.set('authed', 'ok', lease);
    await lease.release();

    // The client is fine with its own relay; the relay is refused by the authority. That is the
    // authority being unavailable to this client, not the client's credential being wrong.
    const b = client(bad.url, { token: await sign(wrong) });
    const first = await timed(b.locks.acquire('authed', { ttlMs: 5_000 }));
    expect(first.code).toBe('unavailable');
    expect(first.message).toMatch(/refused this relay's credential/);
    expect(first.ms).toBeLessThan(LOCK_TIMEOUT_MS + MARGIN_MS);
    // Known refused: later requests fail at once rather than at the deadline.
    const second = await timed(b.locks.acquire('authed', { ttlMs: 5_000 }));
    expect(second.code).toBe('unavailable');
    expect(second.ms).toBeLessThan(LOCK_TIMEOUT_MS / 2);
    console.log(`relay with the wrong secret: first request unavailable in ${first.ms.toFixed(0)} ms, then in ${second.ms.toFixed(0)} ms`);
  });
});

describe('relay processes: --lock-authority', () => {
  let authority: RestartableRelay;
  let forwarder: RestartableRelay;
  beforeAll(async () => {
    authority = await RestartableRelay.start(['--lock-timeout-ms', String(LOCK_TIMEOUT_MS), '--peer-token', PEER_TOKEN]);
    forwarder = await RestartableRelay.start(['--lock-authority', authority.url, '--lock-timeout-ms', String(LOCK_TIMEOUT_MS), '--relay-id', 'F', '--peer-token', PEER_TOKEN]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await forwarder?.dispose();
    await authority?.dispose();
  });

  /** Acquires through `c`, retrying while the answer is unavailable (each try lasts at most its deadline). */
  async function acquireOnceReachable(c: CapsyncClient, key: string, timeoutMs = 10_000): Promise<Lease> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      try {
        return await c.locks.acquire(key, { ttlMs: 10_000 });
      } catch (err) {
        if (!isCapsyncError(err) || err.code !== 'unavailable' || performance.now() > until) throw err;
      }
    }
  }

  it('the authority SIGKILLed: unavailable on the forwarding relay within its deadline; after its restart, its leases and tokens carry on', async () => {
    const f = client(forwarder.url);
    const a = client(authority.url);
    const lease = await acquireOnceReachable(f, 'durable');
    await authority.stop('SIGKILL');
    try {
      const r1 = await timed(f.locks.acquire('another', { ttlMs: 1_000 }));
      const r2 = await timed(lease.renew());
      console.log(`authority down: acquire ${r1.code} in ${r1.ms.toFixed(0)} ms, renew ${r2.code} in ${r2.ms.toFixed(0)} ms`);
      expect([r1.code, r2.code]).toEqual(['unavailable', 'unavailable']);
      expect(r1.ms).toBeLessThan(LOCK_TIMEOUT_MS + MARGIN_MS);
      expect(r2.ms).toBeLessThan(LOCK_TIMEOUT_MS + MARGIN_MS);
    } finally {
      await authority.start();
    }
    // The restarted authority still honours the lease (it is in its SQLite), via either relay.
    const probe = await acquireOnceReachable(f, 'probe');
    await probe.release();
    await lease.renew();
    expect(await codeOf(a.locks.acquire('durable', { ttlMs: 1_000 }))).toBe('lock-timeout');
    await lease.release();
    const after = await a.locks.acquire('durable', { ttlMs: 1_000 });
    expect(after.token).toBeGreaterThan(lease.token);
    await after.release();
  }, 60_000);

  it('nemesis run through the forwarding relay stays linearizable (1 seed)', async () => {
    const seed = testSeed('lock-nemesis-forwarded');
    // The chaos relay forwards to a second authority process through a proxy the nemesis can cut.
    const home = await RestartableRelay.start(['--lock-timeout-ms', '600', '--peer-token', PEER_TOKEN]);
    const cut = await FaultProxy.start(Number(new URL(home.httpUrl).port));
    try {
      const result = await runLockChaos({
        seed,
        opsPerWorker: Number(process.env['LOCK_CHAOS_OPS'] ?? 25),
        workers: 3,
        keys: 2,
        ttlMs: 300,
        lockTimeoutMs: 600,
        nemesis: true,
        stallChance: 0.15,
        relayArgs: ['--lock-authority', cut.url, '--peer-token', PEER_TOKEN],
        extraNemeses: [
          {
            name: 'forwarding relay cut off from the authority',
            inject: async (rnd) => {
              cut.setMode(rnd.pick(['hold', 'reset'] as const));
              return async () => cut.setMode('pass');
            },
          },
          {
            name: 'authority SIGKILL (then restart)',
            inject: async () => {
              await home.stop('SIGKILL');
              return async () => {
                await home.start();
              };
            },
          },
        ],
        log: (line) => console.log(line),
      });
      console.log(`seed ${seed} nemesis: ${result.nemesisEvents.join('; ')}`);
      expect(result.grants).toBeGreaterThan(0);
      assertLinearizable(lockModel({ fence: 'resource' }), result.userHistory, { label: `forwarded-nemesis-user-${seed}`, timeoutMs: 30_000 });
      assertLinearizable(lockModel({ fence: 'relay' }), result.cpHistory, { label: `forwarded-nemesis-cp-${seed}`, timeoutMs: 30_000 });
      expect(result.slowUnavailable.map((op) => `${op.input.f} ${op.tookMs.toFixed(0)} ms`)).toEqual([]);
    } finally {
      await cut.close();
      await home.dispose();
    }
  }, 180_000);
});
