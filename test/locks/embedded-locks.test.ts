/**
 * The CP side against a real relay process (embedded lock authority, SQLite): lease
 * semantics, fencing tokens across SIGKILL restarts, fenced writes into documents, and the
 * relay refusing every other route into the fenced area.
 */
import * as Y from 'yjs';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createClient,
  type CapsyncClient,
  type WebSocketConstructor,
} from '@capsync/client';
import { randomBytes } from 'node:crypto';
import { CloseCode, FENCED_MAP, OWNER_KEY_PREFIX, encodeMessage, decodeMessage, type Message } from '@capsync/core';
import { RestartableRelay } from '../support/restartable-relay.js';
import { codeOf } from '../support/error-code.js';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';

const clients: CapsyncClient[] = [];
function client(url: string, options: Partial<Parameters<typeof createClient>[0]> = {}): CapsyncClient {
  const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS, ...options });
  clients.push(c);
  return c;
}


/** Resolves once `check` holds, re-checking on every update of `doc`. */
function whenDoc(doc: Y.Doc, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      doc.off('update', onUpdate);
      reject(new Error('condition not met within ' + timeoutMs + ' ms'));
    }, timeoutMs);
    const onUpdate = () => {
      if (!check()) return;
      clearTimeout(timer);
      doc.off('update', onUpdate);
      resolve();
    };
    doc.on('update', onUpdate);
    onUpdate();
  });
}

/** A bare protocol connection, for sending what the client library never would. */
async function rawConnection(url: string, ownerKey?: string) {
  const ws = new WebSocket(url);
  const inbox: Message[] = [];
  const waiters: { match: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  ws.on('message', (data: Buffer) => {
    const msg = decodeMessage(new Uint8Array(data));
    const i = waiters.findIndex((w) => w.match(msg));
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(msg);
    else inbox.push(msg);
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(encodeMessage({ type: 'hello', protocolVersion: 1, capabilities: ownerKey ? ['ack', 'error', OWNER_KEY_PREFIX + ownerKey] : ['ack', 'error'] }));
  return {
    send: (msg: Message) => ws.send(encodeMessage(msg)),
    next: (match: (m: Message) => boolean) =>
      new Promise<Message>((resolve) => {
        const i = inbox.findIndex(match);
        if (i >= 0) resolve(inbox.splice(i, 1)[0]!);
        else waiters.push({ match, resolve });
      }),
    close: () => ws.close(),
  };
}

let relay: RestartableRelay;
beforeAll(async () => {
  relay = await RestartableRelay.start();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await relay.stop('SIGTERM');
  await relay.dispose();
});

describe('leases', () => {
  it('grants one holder at a time, with tokens that strictly increase per key', async () => {
    const a = client(relay.url);
    const b = client(relay.url);
    const l1 = await a.locks.acquire('k1', { ttlMs: 5_000 });
    expect(l1.token).toBeGreaterThan(0);
    expect(await codeOf(b.locks.acquire('k1', { ttlMs: 5_000 }))).toBe('lock-timeout');
    const waiting = b.locks.acquire('k1', { ttlMs: 5_000, waitMs: 5_000 });
    await l1.release();
    const l2 = await waiting;
    expect(l2.token).toBeGreaterThan(l1.token);
    expect(l1.signal.aborted).toBe(true);
    // Another key has its own sequence.
    const other = await a.locks.acquire('k2', { ttlMs: 5_000 });
    expect(other.token).toBe(1);
    await Promise.all([l2.release(), other.release()]);
  });

  it('a lease granted after a long wait is valid on arrival (its TTL runs from the grant)', async () => {
    const a = client(relay.url);
    const b = client(relay.url);
    const held = await a.locks.acquire('waited', { ttlMs: 5_000 });
    const waiting = b.locks.acquire('waited', { ttlMs: 300, waitMs: 3_000 });
    // Hold the lock for longer than the waiter's TTL before releasing.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await held.release();
    const lease = await waiting;
    expect(lease.valid).toBe(true);
    expect(lease.expiresAt - Date.now()).toBeGreaterThan(200);
    await lease.release();
  });

  it('a lease that is not renewed is lost at its local deadline, before the relay gives it away', async () => {
    const a = client(relay.url);
    const b = client(relay.url);
    const started = performance.now();
    const lease = await a.locks.acquire('expiring', { ttlMs: 300 });
    const lostAt = new Promise<number>((resolve) => lease.signal.addEventListener('abort', () => resolve(performance.now())));
    const next = await b.locks.acquire('expiring', { ttlMs: 5_000, waitMs: 5_000 });
    const grantedAt = performance.now();
    expect(await lostAt).toBeLessThanOrEqual(grantedAt);
    expect((await lostAt) - started).toBeLessThanOrEqual(300);
    expect(next.token).toBeGreaterThan(lease.token);
    expect(await codeOf(lease.renew())).toBe('lease-lost');
    await next.release();
  });

  it('withLock renews while the work runs and releases afterwards', async () => {
    const a = client(relay.url);
    const b = client(relay.url);
    const token = await a.locks.withLock(
      'long-job',
      async (lease) => {
        // Outlive the TTL several times over: only renewals keep the lease.
        const deadline = performance.now() + 700;
        while (performance.now() < deadline) {
          expect(await codeOf(b.locks.acquire('long-job', { ttlMs: 1_000 }))).toBe('lock-timeout');
        }
        expect(lease.valid).toBe(true);
        return lease.token;
      },
      { ttlMs: 200 },
    );
    const after = await b.locks.acquire('long-job', { ttlMs: 1_000 });
    expect(after.token).toBeGreaterThan(token);
    await after.release();
  });

  it('tokens never go back after a SIGKILL restart, and leases live on until they run out', async () => {
    const a = client(relay.url);
    const before = await a.locks.acquire('durable', { ttlMs: 60_000 });
    await relay.stop('SIGKILL');
    await relay.start();
    const b = client(relay.url, { lockTimeoutMs: 5_000 });
    // The lease from before the crash is still held: nobody else gets the key.
    expect(await codeOf(b.locks.acquire('durable', { ttlMs: 1_000 }))).toBe('lock-timeout');
    // Its holder can still use and release it.
    await before.release();
    const after = await b.locks.acquire('durable', { ttlMs: 1_000 });
    expect(after.token).toBeGreaterThan(before.token);
    await after.release();
  });

  it('answers unavailable within the deadline when the relay cannot be reached', async () => {
    const c = client('ws://127.0.0.1:9', { lockTimeoutMs: 300 });
    const started = performance.now();
    expect(await codeOf(c.locks.acquire('x', { ttlMs: 1_000 }))).toBe('unavailable');
    expect(performance.now() - started).toBeLessThan(300 + 200);
  });

  it('refuses malformed lock requests with a typed error', async () => {
    const a = client(relay.url);
    expect(await codeOf(a.locks.acquire('', { ttlMs: 1_000 }))).toBe('invalid-lock-request');
    expect(await codeOf(a.locks.acquire('k', { ttlMs: 1 }))).toBe('invalid-lock-request');
    expect(await codeOf(a.locks.acquire('x'.repeat(600), { ttlMs: 1_000 }))).toBe('invalid-lock-request');
  });
});

describe('fenced writes', () => {
  it('applies a fenced value to every replica and refuses the old holder after a newer one wrote', async () => {
    const a = client(relay.url);
    const b = client(relay.url);
    const ha = await a.open('shop');
    const hb = await b.open('shop');
    const l1 = await a.locks.acquire('stock/1', { ttlMs: 10_000 });
    await ha.cp.set('stock/1', 10, l1);
    expect(ha.cp.get('stock/1')).toBe(10);
    await whenDoc(hb.doc, () => hb.cp.get('stock/1') === 10);
    await l1.release();
    const l2 = await b.locks.acquire('stock/1', { ttlMs: 10_000 });
    await hb.cp.set('stock/1', 9, l2);
    // The old holder comes back with its old token: refused, value untouched.
    expect(await codeOf(ha.cp.set('stock/1', 100, l1))).toBe('lease-lost');
    expect(hb.cp.get('stock/1')).toBe(9);
    await l2.release();
  });

  it('the relay itself refuses writes without a current lease (whatever the client claims)', async () => {
    // The raw connection is the same client (its owner key): only the lease decides here.
    const ownerKey = randomBytes(16).toString('base64url');
    const a = client(relay.url, { ownerKey });
    const lease = await a.locks.acquire('stock/2', { ttlMs: 10_000 });
    const h = await a.open('shop-2');
    await h.cp.set('stock/2', 7, lease);
    const raw = await rawConnection(`${relay.url}/shop-2`, ownerKey);
    const stranger = await rawConnection(`${relay.url}/shop-2`);
    const cpSet = async (token: number, json = '1', via = raw) => {
      const id = Math.floor(Math.random() * 1e9);
      via.send({ type: 'cp-set', id, key: 'stock/2', token, json });
      const reply = await via.next((m) => m.type === 'cp-reply' && m.id === id);
      return reply.type === 'cp-reply' ? reply.code || 'ok' : 'none';
    };
    expect(await cpSet(lease.token + 1)).toBe('lease-lost'); // a token nobody was granted
    expect(await cpSet(lease.token, '1', stranger)).toBe('not-owner'); // the current token, another identity
    expect(await cpSet(0)).toBe('invalid-lock-request');
    expect(await cpSet(lease.token, 'not json')).toBe('invalid-lock-request');
    await lease.release();
    expect(await cpSet(lease.token)).toBe('lease-lost'); // released
    const next = await a.locks.acquire('stock/2', { ttlMs: 10_000 });
    expect(await cpSet(lease.token)).toBe('stale-token'); // a newer lease exists
    expect(await cpSet(next.token, '8')).toBe('ok');
    await whenDoc(h.doc, () => h.cp.get('stock/2') === 8);
    // Conditional writes: only at the revision the writer read.
    const at = h.cp.entry('stock/2')!.rev;
    expect(at).toBe(2);
    expect(await codeOf(h.cp.set('stock/2', 6, next, { ifRev: at - 1 }))).toBe('conflict');
    await h.cp.set('stock/2', 7, next, { ifRev: at });
    expect(h.cp.entry('stock/2')).toMatchObject({ value: 7, rev: at + 1 });
    expect(await codeOf(h.cp.set('new-key-is-not-leased', 1, next, { ifRev: 0 }))).toBe('invalid-lock-request');
    await next.release();
    raw.close();
    stranger.close();
  });

  it('closes a connection whose update touches the fenced area (4409), keeps the data and other clients', async () => {
    const a = client(relay.url);
    const h = await a.open('shop-3');
    const lease = await a.locks.acquire('stock/3', { ttlMs: 10_000 });
    await h.cp.set('stock/3', 5, lease);
    await lease.release();
    // A raw y-websocket-speaking client that writes into the fenced map directly.
    const rogue = new Y.Doc();
    const ws = new WebSocket(`${relay.url}/shop-3`);
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    await new Promise((resolve) => ws.on('open', resolve));
    ws.on('message', (data: Buffer) => {
      const msg = decodeMessage(new Uint8Array(data));
      if (msg.type === 'sync-step-2' || msg.type === 'update') Y.applyUpdate(rogue, msg.update);
      if (msg.type === 'sync-step-2') {
        const before = Y.encodeStateVector(rogue);
        rogue.getMap(FENCED_MAP).set('stock/3', { value: 1_000_000, token: 999 });
        ws.send(encodeMessage({ type: 'update', update: Y.encodeStateAsUpdate(rogue, before) }));
      }
    });
    ws.send(encodeMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(rogue) }));
    const { code, reason } = await closed;
    expect(code).toBe(CloseCode.FencedArea);
    expect(reason).toMatch(/^fenced-area: /);
    // The value is intact for everyone else.
    const b = client(relay.url);
    const hb = await b.open('shop-3');
    await hb.whenSynced({ timeoutMs: 5_000 });
    expect(hb.cp.get('stock/3')).toBe(5);
    // The HTTP API is another route in: refused too, with 409 and the same code.
    const before = Y.encodeStateVector(rogue);
    rogue.getMap(FENCED_MAP).delete('stock/3');
    const res = await fetch(`${relay.httpUrl}/v1/docs/shop-3/update`, { method: 'POST', body: Buffer.from(Y.encodeStateAsUpdate(rogue, before)) });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('fenced-area');
    const state = new Y.Doc();
    Y.applyUpdate(state, await relay.docUpdate('shop-3'));
    expect(state.getMap(FENCED_MAP).get('stock/3')).toMatchObject({ value: 5 });
  });
});

describe('metrics', () => {
  it('counts grants, releases, expiries, refusals by reason and fencing rejections', async () => {
    // (The relay restarted above: counters start over. Make sure one lease expires.)
    const c = client(relay.url);
    const short = await c.locks.acquire('metrics', { ttlMs: 50 });
    const next = await c.locks.acquire('metrics', { ttlMs: 1_000, waitMs: 2_000 });
    expect(next.token).toBeGreaterThan(short.token);
    await next.release();
    const text = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    const value = (pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? 0);
    expect(value(/^capsync_lock_grants_total (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^capsync_lock_releases_total (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^capsync_lock_expiries_total (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^capsync_lock_refusals_total\{op="acquire",reason="lock-timeout"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^capsync_lock_refusals_total\{op="acquire",reason="invalid-lock-request"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^capsync_fencing_rejections_total\{reason="fenced-area"\} (\d+)/m)).toBe(1);
    expect(value(/^capsync_fencing_rejections_total\{reason="stale-token"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^capsync_fencing_rejections_total\{reason="lease-lost"\} (\d+)/m)).toBeGreaterThan(0);
    expect(text).toMatch(/^capsync_lock_unavailable_total \d+/m);
  });
});

describe('auth', () => {
  it('the lock endpoint needs write access to .capsync/locks; a refusal is reported at once', async () => {
    const { SignJWT } = await import('jose');
    const secret = 'lock-test-secret';
    const sign = (docs: Record<string, string>) =>
      new SignJWT({ docs }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(secret));
    const authed = await RestartableRelay.start(['--auth-secret', secret]);
    try {
      const ok = client(authed.url, { token: await sign({ '*': 'write' }) });
      const lease = await ok.locks.acquire('auth-key', { ttlMs: 1_000 });
      await lease.release();
      const readOnly = client(authed.url, { token: await sign({ '.capsync/locks': 'read', '*': 'write' }), lockTimeoutMs: 5_000 });
      const started = performance.now();
      expect(await codeOf(readOnly.locks.acquire('auth-key', { ttlMs: 1_000 }))).toBe('forbidden');
      expect(performance.now() - started).toBeLessThan(2_000);
      const none = client(authed.url, { lockTimeoutMs: 5_000 });
      expect(await codeOf(none.locks.acquire('auth-key', { ttlMs: 1_000 }))).toBe('unauthorized');
      // A lock connection ends when its token expires, like a document connection.
      // exp is in whole seconds: rounding up leaves the token at least one second to live (with
      // floor + 1 it could expire before the first acquire finished).
      const expSeconds = Math.ceil(Date.now() / 1000) + 1;
      const expiring = new SignJWT({ docs: { '*': 'write' } })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime(expSeconds)
        .sign(new TextEncoder().encode(secret));
      const shortLived = client(authed.url, { token: await expiring, lockTimeoutMs: 5_000 });
      await (await shortLived.locks.acquire('auth-key', { ttlMs: 1_000 })).release();
      // Let the token expire: the relay's clock passing exp is the event waited for.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, expSeconds * 1000 - Date.now()) + 100));
      expect(await codeOf(shortLived.locks.acquire('auth-key', { ttlMs: 1_000 }))).toBe('unauthorized');
    } finally {
      await authed.dispose();
    }
  });
});
