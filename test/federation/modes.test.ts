import { afterEach, describe, expect, it } from 'vitest';
import * as jose from 'jose';
import * as Y from 'yjs';
import { CloseCode, FENCED_MAP, decodeMessage, encodeMessage } from '@capsync/core';
import WebSocket from 'ws';
import type { PeerEndpoint } from '@capsync/server';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { withTimeout } from '../support/wait.js';
import { MESH_TOKEN, whenEndpoint } from './mesh-fixture.js';

const started: TestRelay[] = [];
async function relay(options: Parameters<typeof startRelay>[0]): Promise<TestRelay> {
  const r = await startRelay(options);
  started.push(r);
  return r;
}
afterEach(async () => {
  await Promise.all(started.splice(0).map((r) => r.dispose()));
});

function textUpdate(text: string, clientID: number): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = clientID;
  doc.getText('t').insert(0, text);
  return Y.encodeStateAsUpdate(doc);
}

async function post(r: TestRelay, name: string, update: Uint8Array, token?: string): Promise<void> {
  const res = await fetch(`${r.httpUrl}/v1/docs/${encodeURIComponent(name)}/update`, {
    method: 'POST',
    body: Buffer.from(update),
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  expect(res.status).toBe(200);
}

async function state(r: TestRelay, name: string, token?: string): Promise<Uint8Array> {
  const res = await fetch(`${r.httpUrl}/v1/docs/${encodeURIComponent(name)}/update`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return new Uint8Array(await res.arrayBuffer());
}

function textOf(update: Uint8Array): string {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, update);
  return doc.getText('t').toString();
}

describe('peer modes and credentials', () => {
  it('replicate-all: a backup relay syncs every stored document both ways, not just open ones', async () => {
    const primary = await relay({ relayId: 'primary', peerToken: MESH_TOKEN });
    await post(primary, 'a', textUpdate('alpha', 1));
    await post(primary, 'b/c', textUpdate('beta', 2));
    const backup = await relay({ relayId: 'backup', peers: [primary.url], peerMode: 'replicate-all', peerToken: MESH_TOKEN });
    await post(backup, 'only-on-backup', textUpdate('gamma', 3));
    const ep = backup.relay.mesh.endpoints[0]!;
    await whenEndpoint(ep);
    await backup.relay.replicateAll!.sweep(ep);
    expect(textOf(await state(backup, 'a'))).toBe('alpha');
    expect(textOf(await state(backup, "b/c"))).toBe('beta');
    expect(textOf(await state(primary, 'only-on-backup'))).toBe('gamma');
    expect((await backup.relay.store.list()).sort()).toEqual(['a', 'b/c', 'only-on-backup']);
    // A second sweep finds everything in sync.
    await backup.relay.replicateAll!.sweep(ep);
  });

  it('peers authenticate with a credential minted from the shared secret; a relay with another secret is refused', async () => {
    const secret = 'mesh-secret-0123456789';
    const a = await relay({ relayId: 'a', authSecret: secret });
    const b = await relay({ relayId: 'b', authSecret: secret, peers: [a.url] });
    await whenEndpoint(b.relay.mesh.endpoints[0]!);
    const stranger = await relay({ relayId: 'stranger', authSecret: 'another-secret-987654', peers: [a.url] });
    const ep: PeerEndpoint = stranger.relay.mesh.endpoints[0]!;
    const code = await withTimeout(new Promise<number>((resolve) => ep.once('refused', (c) => resolve(c))), 10_000, 'refusal of a foreign relay');
    expect(code).toBe(CloseCode.Unauthorized);
    expect(ep.up).toBe(false);

    // A user's token (no relay claim) cannot open the mesh endpoint or list documents.
    const key = new TextEncoder().encode(secret);
    const user = await new jose.SignJWT({ docs: { '*': 'write' } }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key);
    const list = await fetch(`${a.httpUrl}/v1/docs`, { headers: { authorization: `Bearer ${user}` } });
    expect(list.status).toBe(403);
    const relayToken = await new jose.SignJWT({ docs: { '*': 'write' }, capsync_relay: true }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key);
    const ok = await fetch(`${a.httpUrl}/v1/docs`, { headers: { authorization: `Bearer ${relayToken}` } });
    expect(ok.status).toBe(200);
  });

  it('an open relay trusts only its peer token as a peer: ?relay=… alone neither opens the mesh nor writes the fenced area', async () => {
    const a = await relay({ relayId: 'a', peerToken: MESH_TOKEN });
    // The mesh endpoint and the document list need the token.
    expect((await fetch(`${a.httpUrl}/v1/docs`)).status).toBe(403);
    expect((await fetch(`${a.httpUrl}/v1/docs`, { headers: { authorization: `Bearer ${MESH_TOKEN}` } })).status).toBe(200);
    const mesh = await rawClose(`${a.url}/.capsync/mesh?relay=rogue`, null);
    expect(mesh.code).toBe(CloseCode.Forbidden);
    // Posing as a relay on a document: the fenced area stays closed.
    const rogue = await rawClose(`${a.url}/doc?relay=rogue`, (doc) => doc.getMap(FENCED_MAP).set('stock', { value: 1e6, token: 999, rev: 1 }));
    expect(rogue.code).toBe(CloseCode.FencedArea);
    const state = new Y.Doc();
    Y.applyUpdate(state, await (await fetch(`${a.httpUrl}/v1/docs/doc/update`)).arrayBuffer().then((b) => new Uint8Array(b)));
    expect(state.getMap(FENCED_MAP).size).toBe(0);
  });

  it('a minted relay credential may only speak as the relay it names', async () => {
    const secret = 'mesh-secret-0123456789';
    const a = await relay({ relayId: 'a', authSecret: secret });
    const key = new TextEncoder().encode(secret);
    const asB = await new jose.SignJWT({ docs: { '*': 'write' }, capsync_relay: true }).setProtectedHeader({ alg: 'HS256' }).setSubject('relay:b').setExpirationTime('1h').sign(key);
    const posing = await rawClose(`${a.url}/doc?relay=c`, null, asB);
    expect(posing.code).toBe(CloseCode.Forbidden);
  });
});

/**
 * Opens a raw WebSocket (an optional bearer token as the capsync subprotocol), answers the
 * relay's sync step 2 with the edit `write` makes, and resolves with how the relay closed it.
 * Without `write`, resolves on the close alone (for refusals at the upgrade).
 */
async function rawClose(url: string, write: ((doc: Y.Doc) => void) | null, token?: string): Promise<{ code: number; reason: string }> {
  const ws = new WebSocket(url, token ? ['capsync', `capsync.jwt.${token}`] : ['capsync']);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => {});
  if (write) {
    const doc = new Y.Doc();
    ws.on('open', () => ws.send(encodeMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(doc) })));
    ws.on('message', (data: Buffer) => {
      const msg = decodeMessage(new Uint8Array(data));
      if (msg.type !== 'sync-step-2') return;
      Y.applyUpdate(doc, msg.update);
      const before = Y.encodeStateVector(doc);
      write(doc);
      ws.send(encodeMessage({ type: 'update', update: Y.encodeStateAsUpdate(doc, before) }));
    });
  }
  return withTimeout(closed, 10_000, `the relay to close ${url}`);
}
