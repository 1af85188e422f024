/**
 * Regressions for the hostile review of issue 11's HTTP/WS edge (findings 6, 8 and 10), each
 * against real relay processes on port 0 (startAttackedRelay): the attack is refused or
 * bounded, other clients stay served, stored data stays intact.
 */
import { EventEmitter } from 'node:events';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { waitForEvent } from '../support/wait.js';

const PEER_TOKEN = 'edge-review-peer-token';
/** The relay's MAX_REFUSED_SOCKETS (packages/server/src/http/connection-limits.ts). */
const MAX_REFUSED_SOCKETS = 128;

function textUpdate(text: string): Uint8Array {
  const doc = new Y.Doc();
  doc.getText('t').insert(0, text);
  return Y.encodeStateAsUpdate(doc);
}

/** One HTTP request on a connection of its own; resolves with status and body. */
function request(url: string, o: { method?: string; headers?: Record<string, string>; body?: Uint8Array } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: o.method ?? 'GET', headers: o.headers ?? {}, agent: false });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Opens a WebSocket and resolves with the relay's close (code and reason), or 'open' if it served it. */
function outcomeOf(url: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('error', reject);
    ws.on('close', (code, reason) => resolve(`${code} ${reason.toString()}`));
  });
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

describe('hostile review of the HTTP/WS edge', () => {
  it('review finding 6: a peer relay linking more documents than --max-connections-per-address still replicates every one', async () => {
    const docs = heavy ? 40 : 6;
    const cap = 3; // the peer's control link + 2 document links, were peers counted
    await using target = await startAttackedRelay(['--peer-token', PEER_TOKEN, '--relay-id', 'r1', '--max-connections-per-address', String(cap)]);
    await using source = await startAttackedRelay(['--peer-token', PEER_TOKEN, '--relay-id', 'r0', '--peer', target.url]);
    // Watchers of every document on the target, each from an address of its own (not the peer's).
    const watchers = await Promise.all(
      Array.from({ length: docs }, (_, i) => ProtocolClient.synced(`${target.url}/d${i}`, { localAddress: `127.0.0.${10 + i}` })),
    );
    const writers = await Promise.all(Array.from({ length: docs }, (_, i) => ProtocolClient.synced(`${source.url}/d${i}`)));
    writers.forEach((w, i) => w.doc.getText('t').insert(0, `doc ${i}`));
    await Promise.all(writers.map((w) => w.waitForAck(1)));
    const arrived = await Promise.allSettled(watchers.map((w, i) => w.waitForText(`doc ${i}`, 8_000)));
    const missing = arrived.flatMap((r, i) => (r.status === 'rejected' ? [`d${i}`] : []));
    expect(missing, 'documents that did not replicate').toEqual([]);
    // The peer's links hold no slot of its address: a client from there is served, and no
    // refusal was counted.
    const client = await ProtocolClient.synced(`${target.url}/d0`);
    expect(client.text).toBe('doc 0');
    const metrics = (await request(`${target.httpUrl}/metrics`)).body;
    expect(metrics.split('\n').filter((l) => l.startsWith('capsync_limit_refusals_total{'))).toEqual([]);
    await Promise.all([...watchers, ...writers, client].map((c) => c.close()));
  }, 20_000);

  it('review finding 8: a DNS-rebinding page (Host and Origin both its own name) cannot write to an open relay, by POST or WebSocket', async () => {
    const [open, listed] = await Promise.all([startAttackedRelay(), startAttackedRelay(['--allowed-origins', 'http://app.example:8080'])]);
    await using relay = open;
    await using withList = listed;
    const port = new URL(relay.httpUrl).port;
    const rebound = { host: `evil.example:${port}`, origin: `http://evil.example:${port}` };
    const post = (url: string, headers: Record<string, string>) =>
      request(`${url}/v1/docs/notes/update`, { method: 'POST', body: textUpdate('pwned'), headers: { 'content-type': 'text/plain', ...headers } });

    const refused = await post(relay.httpUrl, rebound);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).error.code).toBe('origin-not-allowed');
    expect(await outcomeOf(`${relay.url}/notes`, rebound)).toMatch(/^4403 origin-not-allowed/);
    // Nothing was written.
    expect(JSON.parse((await request(`${relay.httpUrl}/v1/docs/notes`)).body)).toEqual({});

    // The relay's own origin by IP literal (rebinding needs a DNS name) and loopback names still work ...
    expect((await post(relay.httpUrl, { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` })).status).toBe(200);
    expect((await post(relay.httpUrl, { host: `localhost:${port}`, origin: `http://localhost:${port}` })).status).toBe(200);
    // ... and a page under a DNS name works once --allowed-origins lists it.
    const app = { host: 'app.example:8080', origin: 'http://app.example:8080' };
    expect((await post(withList.httpUrl, app)).status).toBe(200);
    expect((await post(withList.httpUrl, rebound)).status).toBe(403);
  });

  it('review finding 10: sockets over --max-connections-per-address dribbling header bytes are dropped within the deadline, holding a bounded number of fds', async () => {
    const attackers = heavy ? 2_000 : 400;
    await using relay = await startAttackedRelay(['--max-connections-per-address', '2']);
    const pid = relay.child.pid!;
    const port = Number(new URL(relay.httpUrl).port);
    const held = await Promise.all([0, 1].map(() => ProtocolClient.synced(`${relay.url}/held`)));
    const bystander = await startBystander(relay.url, 'bystander', 10_000, { localAddress: '127.0.0.2' });
    const fdsBefore = openFds(pid);

    const closes = new EventEmitter();
    let closed = 0;
    const started = performance.now();
    const socks = Array.from({ length: attackers }, () => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.on('connect', () => s.write('GET / HTTP/1.1\r\nX-a: '));
      s.on('close', () => {
        closed++;
        closes.emit('close');
      });
      return s;
    });
    // The attack: one more header byte on every socket, often (an idle timeout never fires).
    let peakFds = 0;
    const dribble = setInterval(() => {
      for (const s of socks) if (!s.destroyed && !s.connecting) s.write('a');
      peakFds = Math.max(peakFds, openFds(pid));
    }, 200);
    try {
      await waitForEvent(closes, 'close', () => closed === attackers || undefined, `all ${attackers} refused sockets closed by the relay`, 8_000);
    } finally {
      clearInterval(dribble);
      for (const s of socks) s.destroy();
    }
    const elapsed = performance.now() - started;
    console.log(`${attackers} refused sockets closed in ${Math.round(elapsed)} ms; relay fds ${fdsBefore} -> peak ${peakFds}`);
    expect(elapsed).toBeLessThan(6_000);
    expect(peakFds - fdsBefore).toBeLessThanOrEqual(MAX_REFUSED_SOCKETS + 16);

    // The held connections and the bystander were served throughout.
    held[0]!.doc.getText('t').insert(0, 'still served');
    await held[1]!.waitForText('still served');
    expect(worst(await bystander.stop())).toBeLessThan(2_000);
    await Promise.all(held.map((c) => c.close()));
  });
});
