import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { DocHandle } from '@capsync/client';
import type { CapsyncError } from '@capsync/core';
import { testScope } from '../support/test-scope.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { metricValue, waitForMetricTo } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';
import { withTimeout } from '../support/wait.js';

/**
 * A client's documents share one WebSocket per relay (`/.capsync/mux`), each document a session
 * on it, with the per-document behaviour of a socket of its own: sync, acks, refusals. Against
 * real relay processes; sockets are counted by the relay's `capsync_sockets{endpoint}`.
 */

const SECRET = 'multiplex-test-secret';
const { relay, client } = testScope();

function sockets(r: RestartableRelay, endpoint: 'mux' | 'doc'): Promise<number> {
  return metricValue(r.httpUrl, 'capsync_sockets', { endpoint });
}

function socketsTo(r: RestartableRelay, endpoint: 'mux' | 'doc', n: number): Promise<number> {
  return waitForMetricTo(r.httpUrl, 'capsync_sockets', { endpoint }, (v) => v === n, `== ${n}`);
}

function text(h: DocHandle): string {
  return h.doc.getText('t').toString();
}

const names = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}/${i}`);

describe('multiplexed client', () => {
  it('syncs 500 documents over one socket; closing 499 of them leaves the socket and the last one working', async () => {
    const r = await relay();
    const a = client(r.url);
    const docs = await Promise.all(names('many', 500).map((n) => a.open(n)));
    for (const [i, h] of docs.entries()) h.doc.getText('t').insert(0, `doc ${i}`);
    await Promise.all(docs.map((h) => h.flush({ timeoutMs: 30_000 })));
    expect(await sockets(r, 'mux')).toBe(1);
    expect(await sockets(r, 'doc')).toBe(0);

    const b = client(r.url);
    const copies = await Promise.all(names('many', 500).map((n) => b.open(n)));
    await Promise.all(copies.map((h) => h.whenSynced({ timeoutMs: 30_000 })));
    expect(copies.map(text)).toEqual(docs.map(text));
    expect(await sockets(r, 'mux')).toBe(2);

    await Promise.all(docs.slice(0, 499).map((h) => h.close()));
    const last = docs[499]!;
    const copy = copies[499]!;
    last.doc.getText('t').insert(0, 'still here: ');
    await last.flush();
    await copy.whenSynced();
    expect(text(copy)).toBe('still here: doc 499');
    copy.doc.getText('t').insert(0, '> ');
    await copy.flush();
    await last.whenSynced();
    expect(text(last)).toBe('> still here: doc 499');
    expect(await sockets(r, 'mux')).toBe(2);

    // The last document gone, the socket closes (after its linger).
    await last.close();
    await socketsTo(r, 'mux', 1);
  });

  it('refuses a document the token does not allow on its own, while the others sync', async () => {
    const r = await relay(['--auth-secret', SECRET]);
    const token = await mintToken(SECRET, { sub: 'alice', docs: { 'ok/*': 'write' } });
    const c = client(r.url, { token });
    const refused = await c.open('secret/plans');
    const error = withTimeout(new Promise<CapsyncError>((resolve) => refused.on('error', resolve)), 10_000, 'the refusal of secret/plans');
    const ok = await Promise.all(names('ok', 5).map((n) => c.open(n)));
    refused.doc.getText('t').insert(0, 'not for the relay');
    for (const h of ok) h.doc.getText('t').insert(0, h.name);
    expect((await error).code).toBe('forbidden');
    await Promise.all(ok.map((h) => h.flush()));
    expect(refused.pending).toBe(1);
    expect(refused.status).toBe('offline');
    expect(await sockets(r, 'mux')).toBe(1);

    const reader = client(r.url, { token });
    for (const n of names('ok', 5)) {
      const h = await reader.open(n);
      await h.whenSynced();
      expect(text(h)).toBe(n);
    }
  });

  it('resyncs every document on one new socket after a relay restart', async () => {
    const r = await relay();
    const c = client(r.url);
    const docs = await Promise.all(names('restart', 50).map((n) => c.open(n)));
    for (const h of docs) h.doc.getText('t').insert(0, 'before');
    await Promise.all(docs.map((h) => h.flush()));

    await r.stop('SIGKILL');
    for (const h of docs) h.doc.getText('t').insert(6, ' offline');
    await r.start();
    await Promise.all(docs.map((h) => h.flush({ timeoutMs: 20_000 })));
    expect(await sockets(r, 'mux')).toBe(1);
    expect(await sockets(r, 'doc')).toBe(0);

    const reader = client(r.url);
    const copies = await Promise.all(names('restart', 50).map((n) => reader.open(n)));
    await Promise.all(copies.map((h) => h.whenSynced()));
    expect(new Set(copies.map(text))).toEqual(new Set(['before offline']));
  });

  it('falls back to a socket per document on a relay without the multiplexed endpoint', async () => {
    const r = await relay(['--mux', 'off']);
    const c = client(r.url);
    const errors: CapsyncError[] = [];
    const docs = await Promise.all(names('old', 3).map((n) => c.open(n)));
    for (const h of docs) {
      h.on('error', (err) => errors.push(err));
      h.doc.getText('t').insert(0, h.name);
    }
    await Promise.all(docs.map((h) => h.flush()));
    expect(await sockets(r, 'doc')).toBe(3);
    expect(await sockets(r, 'mux')).toBe(0);
    // Opened after the fallback: straight to its own socket.
    const late = await c.open('old/late');
    late.doc.getText('t').insert(0, 'late');
    await late.flush();
    expect(await sockets(r, 'doc')).toBe(4);
    expect(errors).toEqual([]);
  });

  it('leaves out a URL without the multiplexed endpoint and multiplexes on the next one', async () => {
    const [old, current] = await Promise.all([relay(['--mux', 'off']), relay()]);
    const c = client([old.url, current.url]);
    const errors: CapsyncError[] = [];
    const docs = await Promise.all(names('mixed', 3).map((n) => c.open(n)));
    for (const h of docs) {
      h.on('error', (err) => errors.push(err));
      h.doc.getText('t').insert(0, h.name);
    }
    await Promise.all(docs.map((h) => h.flush()));
    expect(docs.map((h) => h.relayUrl)).toEqual(docs.map(() => current.url));
    expect(await sockets(current, 'mux')).toBe(1);
    expect((await sockets(old, 'doc')) + (await sockets(old, 'mux'))).toBe(0);
    expect(errors).toEqual([]);
  });

  it('uses a socket per document with multiplex: false', async () => {
    const r = await relay();
    const c = client(r.url, { multiplex: false });
    const docs = await Promise.all(names('plain', 3).map((n) => c.open(n)));
    for (const h of docs) h.doc.getText('t').insert(0, h.name);
    await Promise.all(docs.map((h) => h.flush()));
    expect(await sockets(r, 'doc')).toBe(3);
    expect(await sockets(r, 'mux')).toBe(0);
  });
});

describe('sync rounds on a shared socket', () => {
  it('asks for a document once when it is opened and awaited at once, and later waits still get a fresh round', async () => {
    const r = await relay();
    const writer = client(r.url);
    const w = await writer.open('rounds/doc');
    w.doc.getText('t').insert(0, 'x'.repeat(200_000));
    await w.flush({ timeoutMs: 10_000 });

    const reader = client(r.url);
    // The socket is up before the document is opened, so its session opens at once.
    await (await reader.open('rounds/other')).whenSynced({ timeoutMs: 10_000 });
    const before = await metricValue(r.httpUrl, 'capsync_messages_in_total', { type: 'sync-step-1' });
    const h = await reader.open('rounds/doc');
    // Each of these used to send a sync step 1 with the same empty state vector: the relay
    // encoded and sent the whole document once per call.
    await Promise.all([1, 2, 3].map(() => h.whenSynced({ timeoutMs: 10_000 })));
    expect(text(h)).toHaveLength(200_000);
    const asked = (await metricValue(r.httpUrl, 'capsync_messages_in_total', { type: 'sync-step-1' })) - before;
    expect(asked).toBeGreaterThanOrEqual(1);
    expect(asked).toBeLessThanOrEqual(2);

    // A wait that starts after an edit elsewhere was acknowledged sees it (a round of its own).
    w.doc.getText('t').insert(0, 'fresh ');
    await w.flush({ timeoutMs: 10_000 });
    await h.whenSynced({ timeoutMs: 10_000 });
    expect(text(h).startsWith('fresh ')).toBe(true);
  });

  it('sends a large local document to the relay in chunks', async () => {
    const r = await relay();
    const sentFrames: number[] = [];
    class CountingWebSocket extends WebSocket {
      override send(data: unknown, ...rest: unknown[]): void {
        sentFrames.push((data as Uint8Array).byteLength);
        (super.send as (...args: unknown[]) => void)(data, ...rest);
      }
    }
    const writer = client(r.url, { WebSocket: CountingWebSocket as never });
    const small = await writer.open('upload/small');
    await small.whenSynced({ timeoutMs: 10_000 });
    const big = await writer.open('upload/big');
    await big.whenSynced({ timeoutMs: 10_000 });
    big.doc.getText('t').insert(0, 'z'.repeat(3 * 1024 * 1024));
    small.doc.getText('t').insert(0, 'meanwhile');
    await Promise.all([big.flush({ timeoutMs: 30_000 }), small.flush({ timeoutMs: 30_000 })]);
    // Every frame is at most one chunk (64 KiB) and its header: the 3 MB update went in pieces.
    expect(Math.max(...sentFrames)).toBeLessThanOrEqual(64 * 1024 + 16);

    const reader = client(r.url);
    const copy = await reader.open('upload/big');
    await copy.whenSynced({ timeoutMs: 30_000 });
    expect(text(copy)).toHaveLength(3 * 1024 * 1024);
    expect(text(await reader.open('upload/small').then(async (h) => (await h.whenSynced({ timeoutMs: 10_000 }), h)))).toBe('meanwhile');
  });
});
