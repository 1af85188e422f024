/**
 * Issue 12 P5: relay↔relay over one multiplexed socket per pair of relays. Every document two
 * relays share is a session on that socket, whose control session carries the link's own
 * traffic (hellos, pings); when both relays dialled, the socket dialled by the smaller relay id
 * stays. A document refused or failing on it ends alone. A peer without the multiplexed
 * endpoint (an older relay, or `--mux off`) gets a socket per document, as before.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode, RELAY_CAPABILITY, relayIdCapability, relayIdOf } from '@capsync/core';
import { CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX } from '@capsync/server';
import { MuxClient } from '../support/mux-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { waitForEvent, withTimeout } from '../support/wait.js';
import { MESH_TOKEN, startMesh, whenEndpoint, whenMeshUp, type Mesh } from './mesh-fixture.js';

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
