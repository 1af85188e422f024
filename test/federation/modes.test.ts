import { afterEach, describe, expect, it } from 'vitest';
import * as jose from 'jose';
import * as Y from 'yjs';
import { CloseCode } from '@capsync/core';
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
});
