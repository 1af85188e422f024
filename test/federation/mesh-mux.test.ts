/**
 * Issue 12 P5: relay↔relay over one multiplexed socket per pair of relays. Every document two
 * relays share is a session on that socket, whose control session carries the link's own
 * traffic (hellos, pings); when both relays dialled, the socket dialled by the smaller relay id
 * stays. A document refused or failing on it ends alone. A peer without the multiplexed
 * endpoint (an older relay, or `--mux off`) gets a socket per document, as before.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import * as Y from 'yjs';
import {
  CloseCode,
  MUX_PATH,
  RELAY_CAPABILITY,
  decodeMessage,
  decodeMuxFrame,
  encodeMessage,
  encodeMuxFrame,
  helloFor,
  relayIdCapability,
  relayIdOf,
  type Message,
} from '@capsync/core';
import { CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX } from '@capsync/server';
import { MuxClient } from '../support/mux-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { waitForEvent, withTimeout } from '../support/wait.js';
import { MESH_TOKEN, cut, startMesh, whenEndpoint, whenMeshUp, type Mesh } from './mesh-fixture.js';

/** `capsync_sockets` of one relay by endpoint (the sockets it serves). */
async function sockets(relay: TestRelay): Promise<Record<string, number>> {
  const text = await (await fetch(`${relay.httpUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^capsync_sockets\{endpoint="([a-z]+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/**
 * Re-checks `check` every 25 ms until it holds (or `timeoutMs`). Only for what no event reports:
 * a socket's close reaching the relay that served it, as its gauge shows.
 */
async function eventually<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function textUpdate(text: string, clientID: number): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = clientID;
  doc.getText('t').insert(0, text);
  return Y.encodeStateAsUpdate(doc);
}

/**
 * A fake peer relay serving the multiplexed endpoint over a real WebSocket, so a test can say
 * what a relay never would: answers the control hello with its relay id (and `mux`), accepts
 * every session the relay opens, and records opens, messages and closes per sid.
 */
class FakeMuxPeer extends EventEmitter {
  sockets = 0;
  readonly opens: { sid: number; name: string }[] = [];
  readonly got = new Map<number, Message[]>();
  readonly closes = new Map<number, { code: number; reason: string }>();
  private ws: WebSocket | null = null;

  private constructor(
    private readonly server: WebSocketServer,
    readonly url: string,
  ) {
    super();
  }

  static async start(relayId: string): Promise<FakeMuxPeer> {
    const server = new WebSocketServer({ port: 0, handleProtocols: (offered: Set<string>) => (offered.has(CAPSYNC_PROTOCOL) ? CAPSYNC_PROTOCOL : false) });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    const peer = new FakeMuxPeer(server, `ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('connection', (ws, req) => {
      if (!(req.url ?? '').startsWith(`/${MUX_PATH}?`)) return ws.close(CloseCode.InvalidDocName, 'invalid-doc-name: fake');
      peer.sockets++;
      peer.ws = ws;
      ws.on('message', (data: Buffer) => {
        const { sid, body } = decodeMuxFrame(new Uint8Array(data));
        const msg = decodeMessage(body);
        if (sid !== 0) (peer.got.get(sid) ?? peer.got.set(sid, []).get(sid)!).push(msg);
        else if (msg.type === 'hello') peer.sendMessage(0, helloFor('peer', [relayIdCapability(relayId)]));
        else if (msg.type === 'session-open') {
          peer.opens.push({ sid: msg.sid, name: msg.name });
          peer.sendMessage(0, { type: 'session-opened', sid: msg.sid, permission: 'write' });
        } else if (msg.type === 'session-close') peer.closes.set(msg.sid, { code: msg.code, reason: msg.reason });
        peer.emit('change');
      });
      ws.on('close', () => peer.sockets--);
    });
    return peer;
  }

  send(sid: number, body: Uint8Array): void {
    this.ws?.send(encodeMuxFrame(sid, body));
  }

  sendMessage(sid: number, msg: Message): void {
    this.send(sid, encodeMessage(msg));
  }

  until<T>(check: () => T | undefined | false, what: string): Promise<T> {
    return waitForEvent(this, 'change', check, what);
  }

  close(): Promise<void> {
    for (const ws of this.server.clients) ws.terminate();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const cleanups: (() => Promise<unknown>)[] = [];
let mesh: Mesh | null = null;
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await mesh?.close();
  mesh = null;
});

describe('relay mesh over one multiplexed socket per pair', () => {
  it('carries N shared documents between two relays over one socket, the one the smaller relay id dialled', async () => {
    const N = 40;
    mesh = await startMesh(2);
    await whenMeshUp(mesh.relays);
    const [r0, r1] = mesh.relays as [TestRelay, TestRelay];
    const [ep0, ep1] = [r0.relay.mesh.endpoints[0]!, r1.relay.mesh.endpoints[0]!];
    // r1 > r0: r1 takes the socket r0 dialled and closes its own ('duplicate link').
    await waitForEvent(ep1, 'up', () => ep1.onPeersSocket || undefined, 'r1 on the socket r0 dialled');
    expect(ep0.onPeersSocket).toBe(false);
    expect(ep0.multiplexed && ep1.multiplexed).toBe(true);

    // One client socket on each relay, N documents each.
    const c0 = await MuxClient.connect(r0.url);
    const c1 = await MuxClient.connect(r1.url);
    cleanups.push(() => c0.close(), () => c1.close());
    const names = Array.from({ length: N }, (_, i) => `doc-${i}`);
    const on0 = await Promise.all(names.map((n) => c0.synced(n)));
    const on1 = await Promise.all(names.map((n) => c1.synced(n)));
    on0.forEach((s, i) => s.type(`from r0 #${i};`));
    on1.forEach((s, i) => s.type(`from r1 #${i};`));
    await Promise.all([...on0, ...on1].map((s, i) => withTimeout(waitForEvent(s, 'change', () => (s.text.includes(`r0 #${i % N};`) && s.text.includes(`r1 #${i % N};`)) || undefined, `${s.name} converged`), 15_000, `${s.name} converged`)));

    // Every socket between the two relays is served by one of them: the two clients' and one more.
    const counted = await eventually(async () => {
      const [s0, s1] = await Promise.all([sockets(r0), sockets(r1)]);
      const total = (e: string) => (s0[e] ?? 0) + (s1[e] ?? 0);
      return total('mux') === 3 ? { s0, s1, doc: total('doc'), mesh: total('mesh') } : undefined;
    }, 'one socket for the pair (plus the two clients)');
    expect(counted.doc).toBe(0);
    expect(counted.mesh).toBe(0);
    // r1 served r0's socket and its own client; r0 served its client only.
    expect(counted.s0.mux).toBe(1);
    expect(counted.s1.mux).toBe(2);
    // One link per document per pair, as before the socket was shared.
    for (const n of names) expect(r0.relay.mesh.linksOf(n).length + r1.relay.mesh.linksOf(n).length).toBe(1);
  });

  it('a partition that black-holes the pair socket takes the peer down on both relays (the adopting one pings it), and the heal brings one socket back', async () => {
    mesh = await startMesh(2);
    await whenMeshUp(mesh.relays);
    const [r0, r1] = mesh.relays as [TestRelay, TestRelay];
    const [ep0, ep1] = [r0.relay.mesh.endpoints[0]!, r1.relay.mesh.endpoints[0]!];
    await waitForEvent(ep1, 'up', () => ep1.onPeersSocket || undefined, 'r1 on the socket r0 dialled');
    const c0 = await MuxClient.connect(r0.url);
    const c1 = await MuxClient.connect(r1.url);
    cleanups.push(() => c0.close(), () => c1.close());
    const [s0, s1] = [await c0.synced('held'), await c1.synced('held')];

    // Nothing passes, nothing closes: only heartbeats can tell (the served socket's idle timeout is a minute).
    cut(mesh, 0, 1, 'hold');
    await Promise.all([whenEndpoint(ep0, false), whenEndpoint(ep1, false)]);
    s0.type('written on r0 while cut;');
    s1.type('written on r1 while cut;');
    await Promise.all([s0.waitForAck(s0.seq), s1.waitForAck(s1.seq)]);

    cut(mesh, 0, 1, 'pass');
    for (const s of [s0, s1]) {
      await waitForEvent(s, 'change', () => (s.text.includes('on r0 while cut;') && s.text.includes('on r1 while cut;')) || undefined, 'converged after the heal', 15_000);
    }
    await waitForEvent(ep1, 'up', () => ep1.onPeersSocket || undefined, 'r1 on the socket r0 dialled again');
    const counted = await eventually(async () => {
      const [a, b] = await Promise.all([sockets(r0), sockets(r1)]);
      return (a.mux ?? 0) + (b.mux ?? 0) === 3 ? true : undefined;
    }, 'one socket for the pair again (plus the two clients)');
    expect(counted).toBe(true);
  });

  it('a document refused or failing on a peer relay socket ends alone; the others keep replicating', async () => {
    const relay = await startRelay({ relayId: 'r0', peerToken: MESH_TOKEN, meshSize: 2 });
    cleanups.push(() => relay.dispose());
    // A peer relay r9 dials r0's multiplexed endpoint, as PeerEndpoint does.
    const peer = await MuxClient.connect(relay.url, {
      protocols: [CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX + MESH_TOKEN],
      query: { relay: 'r9' },
      capabilities: [RELAY_CAPABILITY, relayIdCapability('r9')],
    });
    cleanups.push(() => peer.close());
    expect(relayIdOf(await peer.waitHello())).toBe('r0');
    const a = await peer.synced('a');
    const b = await peer.synced('b');
    expect(a.permission).toBe('write');

    // A name no relay serves: that open is refused (4404), alone.
    const reserved = peer.open('.capsync/nope');
    expect((await reserved.waitClosed()).code).toBe(CloseCode.InvalidDocName);
    // A frame no relay sends on b: b's session closes (4400); the socket and a carry on.
    b.sendRaw(new Uint8Array([0, 9]));
    expect((await b.waitClosed()).code).toBe(CloseCode.BadMessage);
    expect(peer.isOpen).toBe(true);

    // a still replicates: trusted content from the peer is applied, acked and served to clients.
    const seq = a.type('from r9');
    await a.waitForAck(seq);
    const client = await MuxClient.connect(relay.url);
    cleanups.push(() => client.close());
    const seen = await client.synced('a');
    await seen.waitForText('from r9');
    // The peer may open b again on the same socket (its earlier session is gone).
    const again = await peer.synced('b');
    expect(again.closeInfo).toBeNull();
  });

  it('the relay that opened a document on the pair socket reopens it alone when the peer fails it; the socket and the other documents carry on', async () => {
    const peer = await FakeMuxPeer.start('r9');
    cleanups.push(() => peer.close());
    const relay = await startRelay({ relayId: 'r0', peerToken: MESH_TOKEN, peers: [peer.url], meshSize: 2 });
    cleanups.push(() => relay.dispose());
    await whenEndpoint(relay.relay.mesh.endpoints[0]!);
    const client = await MuxClient.connect(relay.url);
    cleanups.push(() => client.close());
    const [ca] = await Promise.all([client.synced('a'), client.synced('b')]);
    const opens = await peer.until(() => (peer.opens.length >= 2 ? peer.opens : undefined), 'both documents opened on the socket');
    expect(peer.sockets).toBe(1);
    expect(opens.map((o) => o.sid % 2)).toEqual([1, 1]); // the dialling side's sids
    const b = opens.find((o) => o.name === 'b')!;
    const a = opens.find((o) => o.name === 'a')!;
    // The socket said the hellos once: a session starts with sync step 1, not a hello of its own.
    expect(peer.got.get(a.sid)![0]!.type).toBe('sync-step-1');

    // A frame no relay sends, on b: r0 closes b's session (4400) and opens b again, on the same socket.
    peer.send(b.sid, new Uint8Array([0, 9]));
    const reopened = await peer.until(() => peer.opens.find((o) => o.name === 'b' && o.sid > b.sid), 'b opened again');
    expect(peer.closes.get(b.sid)?.code).toBe(CloseCode.BadMessage);
    expect(peer.closes.has(a.sid)).toBe(false);
    expect(peer.sockets).toBe(1);
    // a still replicates: what the peer sends on a reaches r0's clients.
    peer.sendMessage(a.sid, { type: 'sync-step-2', update: textUpdate('from r9', 77) });
    await ca.waitForText('from r9');
    expect(reopened.name).toBe('b');
  });

  it('falls back to a socket per document with a peer that has no multiplexed endpoint (--mux off)', async () => {
    const old = await startRelay({ relayId: 'r1', peerToken: MESH_TOKEN, mux: false, meshSize: 2 });
    cleanups.push(() => old.dispose());
    const relay = await startRelay({ relayId: 'r0', peerToken: MESH_TOKEN, peers: [old.url], meshSize: 2 });
    cleanups.push(() => relay.dispose());
    const ep = relay.relay.mesh.endpoints[0]!;
    await whenEndpoint(ep);
    expect(ep.socketPerDocument).toBe(true);
    const c0 = await MuxClient.connect(relay.url);
    cleanups.push(() => c0.close());
    const s0 = await c0.synced('shared');
    s0.type('over its own socket');
    // The older relay serves no multiplexed endpoint: read the document over its HTTP API.
    await eventually(async () => {
      const res = await fetch(`${old.httpUrl}/v1/docs/shared`);
      return res.ok && JSON.stringify(await res.json()).includes('over its own socket') ? true : undefined;
    }, 'the document on the older relay');
    const served = await sockets(old);
    expect(served.mux ?? 0).toBe(0);
    expect(served.mesh).toBe(1);
    expect(served.doc).toBeGreaterThanOrEqual(1);
  });
});
