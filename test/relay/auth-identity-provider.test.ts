/**
 * Auth that fits an identity provider (issue 14): tokens signed by the provider's private key and
 * checked with its public key (a PEM file) or its JWK Set URL (a real local HTTP server here,
 * rotating keys), document permissions under a claim of another name and shape, and what must
 * stay refused: HMAC tokens without a secret, a public key misused as an HMAC secret, other
 * keys, and relay trust claimed by a provider's token.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { JwtAccess, relayCredential } from '@capsync/server';
import { CloseCode } from '@capsync/core';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';

const now = () => Math.floor(Date.now() / 1000);

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function relay(options: Parameters<typeof startRelay>[0]): Promise<TestRelay> {
  const r = await startRelay(options);
  relays.push(r);
  return r;
}

async function sign(key: jose.CryptoKey | Uint8Array, alg: string, claims: jose.JWTPayload, kid?: string): Promise<string> {
  return new jose.SignJWT({ sub: 'alice', exp: now() + 600, ...claims }).setProtectedHeader({ alg, ...(kid ? { kid } : {}) }).setIssuedAt().sign(key);
}

/** Opens `doc` with `token`: 'synced', or how the relay closed the connection. */
async function open(r: TestRelay, doc: string, token: string): Promise<string> {
  const c = await ProtocolClient.connect(`${r.docUrl(doc)}?token=${token}`);
  clients.push(c);
  return Promise.race([c.waitSynced().then(() => 'synced'), c.waitClosed().then((i) => `closed ${i.code}`)]);
}

/** A JWK Set server whose keys the test swaps; counts its fetches. */
async function jwksServer(): Promise<{ url: string; keys: jose.JWK[]; fetches: () => number }> {
  const state = { keys: [] as jose.JWK[], fetches: 0 };
  const server = http.createServer((req, res) => {
    state.fetches++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: state.keys }));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`,
    get keys() {
      return state.keys;
    },
    set keys(k: jose.JWK[]) {
      state.keys = k;
    },
    fetches: () => state.fetches,
  };
}

describe('JWTs of an identity provider', () => {
  it('verifies RS256 tokens with the public key (PEM) and refuses other keys, HMAC tokens and a public key used as an HMAC secret', async () => {
    const { publicKey, privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
    const pem = await jose.exportSPKI(publicKey);
    const r = await relay({ authPublicKey: pem });
    expect(await open(r, 'notes', await sign(privateKey, 'RS256', { docs: { notes: 'write' } }))).toBe('synced');
    expect(await open(r, 'other', await sign(privateKey, 'RS256', { docs: { notes: 'write' } }))).toBe(`closed ${CloseCode.Forbidden}`);

    const stranger = await jose.generateKeyPair('RS256');
    expect(await open(r, 'notes', await sign(stranger.privateKey, 'RS256', { docs: { notes: 'write' } }))).toBe(`closed ${CloseCode.Unauthorized}`);
    // No secret configured: no HMAC token, whatever its key, passes. Least of all the public
    // key's own bytes (algorithm confusion).
    expect(await open(r, 'notes', await sign(new TextEncoder().encode('some-secret-0123456789'), 'HS256', { docs: { notes: 'write' } }))).toBe(`closed ${CloseCode.Unauthorized}`);
    expect(await open(r, 'notes', await sign(new TextEncoder().encode(pem), 'HS256', { docs: { notes: 'write' } }))).toBe(`closed ${CloseCode.Unauthorized}`);
  });

  it('fetches the JWK Set, caches it, and picks up a rotated key with no restart', async () => {
    const jwks = await jwksServer();
    const first = await jose.generateKeyPair('ES256', { extractable: true });
    jwks.keys = [{ ...(await jose.exportJWK(first.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }];
    const r = await relay({ authJwks: jwks.url, authJwksCooldownMs: 1_000 });
    const docs = { docs: { 'team/*': 'write' } };
    expect(await open(r, 'team/a', await sign(first.privateKey, 'ES256', docs, 'k1'))).toBe('synced');
    expect(await open(r, 'team/b', await sign(first.privateKey, 'ES256', docs, 'k1'))).toBe('synced');
    expect(jwks.fetches()).toBe(1); // cached

    // The provider rotates: a new key, the old one gone. A token of the new key makes the relay fetch again.
    const second = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    jwks.keys = [{ ...(await jose.exportJWK(second.publicKey)), kid: 'k2', alg: 'EdDSA', use: 'sig' }];
    // Refused until the cooldown (1 s, the least allowed) since the last fetch is over, then taken.
    const token = await sign(second.privateKey, 'EdDSA', docs, 'k2');
    const deadline = Date.now() + 10_000;
    while ((await open(r, 'team/c', token)) !== 'synced') expect(Date.now()).toBeLessThan(deadline);
    expect(jwks.fetches()).toBeLessThanOrEqual(3);
    // A key id the provider never published: refused.
    const rogue = await jose.generateKeyPair('ES256');
    expect(await open(r, 'team/d', await sign(rogue.privateKey, 'ES256', docs, 'k3'))).toBe(`closed ${CloseCode.Unauthorized}`);
  });

  it('reads the permissions from a claim of another name and shape (--auth-docs-claim)', async () => {
    const { publicKey, privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
    const jwk = JSON.stringify({ keys: [{ ...(await jose.exportJWK(publicKey)), kid: 'only' }] });
    const r = await relay({ authPublicKey: jwk, authDocsClaim: 'https://app.example/claims.capsync.docs' });
    const token = await sign(privateKey, 'ES256', { 'https://app.example/claims': { capsync: { docs: { read: ['handbook'], write: ['notes/*'] } } } }, 'only');
    expect(await open(r, 'notes/1', token)).toBe('synced');
    expect(await open(r, 'handbook', token)).toBe('synced');
    expect(await open(r, 'secret', token)).toBe(`closed ${CloseCode.Forbidden}`);
    // Read only: the write is refused, the connection stays.
    const reader = await ProtocolClient.synced(`${r.docUrl('handbook')}?token=${token}`);
    clients.push(reader);
    reader.type('nope');
    await reader.waitFor(() => reader.errors.find((e) => e.code === 'read-only'), 'the read-only error');
    // A list is write on each name.
    const listed = await sign(privateKey, 'ES256', { 'https://app.example/claims': { capsync: { docs: ['notes/*'] } } }, 'only');
    expect(await open(r, 'notes/2', listed)).toBe('synced');
  });

  it("never takes relay trust from a provider's token", async () => {
    const { publicKey, privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
    const r = await relay({ authPublicKey: await jose.exportSPKI(publicKey), authSecret: 'mesh-shared-secret-0123456789' });
    const token = await sign(privateKey, 'RS256', { docs: { '*': 'write' }, capsync_relay: true });
    // Listing every document is for relay credentials only.
    const res = await fetch(`${r.httpUrl}/v1/docs`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(403);
    const mesh = await sign(new TextEncoder().encode('mesh-shared-secret-0123456789'), 'HS256', { docs: { '*': 'write' }, capsync_relay: true });
    expect((await fetch(`${r.httpUrl}/v1/docs`, { headers: { authorization: `Bearer ${mesh}` } })).status).toBe(200);
  });

  it('refuses to start a mesh whose relays could not trust each other, and a private key given as the public one', async () => {
    const { publicKey, privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
    await expect(startRelay({ authPublicKey: await jose.exportSPKI(publicKey), peers: ['ws://127.0.0.1:9'] })).rejects.toThrow(/authSecret/);
    await expect(startRelay({ authPublicKey: await jose.exportPKCS8(privateKey) })).rejects.toThrow(/private key/);
  });

  it('takes every key of a PEM file, and a token without kid against a JWK Set URL with several keys', async () => {
    const first = await jose.generateKeyPair('RS256', { extractable: true });
    const second = await jose.generateKeyPair('RS256', { extractable: true });
    const bundle = `${await jose.exportSPKI(first.publicKey)}\n${await jose.exportSPKI(second.publicKey)}`;
    const local = new JwtAccess({ publicKeys: [bundle] });
    for (const k of [first, second]) await expect(local.authorize(await sign(k.privateKey, 'RS256', { docs: { n: 'write' } }), 'n')).resolves.toMatchObject({ permission: 'write' });

    const jwks = await jwksServer();
    jwks.keys = [await jose.exportJWK(first.publicKey), await jose.exportJWK(second.publicKey)];
    const remote = new JwtAccess({ jwksUrl: jwks.url });
    for (const k of [first, second]) await expect(remote.authenticate(await sign(k.privateKey, 'RS256', {}))).resolves.toMatchObject({ subject: 'alice' });
  });

  it("keeps verifying with the keys it fetched last while the provider's JWK Set cannot be fetched", async () => {
    const jwks = await jwksServer();
    const { publicKey, privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
    jwks.keys = [{ ...(await jose.exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }];
    const access = new JwtAccess({ jwksUrl: jwks.url });
    await expect(access.authenticate(await sign(privateKey, 'ES256', {}, 'k1'))).resolves.toMatchObject({ subject: 'alice' });
    // The provider goes away for longer than the cache's age (10 minutes): the last keys still verify.
    await new Promise((r) => servers.pop()!.close(r));
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 11 * 60_000);
      await expect(access.authenticate(await sign(privateKey, 'ES256', { exp: Math.floor(Date.now() / 1000) + 600 }, 'k1'))).resolves.toMatchObject({ subject: 'alice' });
    } finally {
      vi.useRealTimers();
    }
    // A key it never had is still refused.
    const rogue = await jose.generateKeyPair('ES256');
    await expect(access.authenticate(await sign(rogue.privateKey, 'ES256', {}, 'k9'))).rejects.toMatchObject({ code: 'unauthorized' });
  });

  it("reads a relay credential's documents from `docs`, whatever --auth-docs-claim says (a mesh keeps replicating)", async () => {
    const secret = 'mesh-secret-0123456789abcdef';
    const access = new JwtAccess({ secret, docsClaim: 'app.docs' });
    const credential = await relayCredential({ peerToken: undefined, authSecret: secret, authIssuer: undefined, authAudience: undefined, relayId: 'b', maxTokenLifetimeMs: 3_600_000 })();
    expect(await access.authorize(credential, 'notes')).toMatchObject({ permission: 'write', relay: true });
    // A user's token is read at the configured path only.
    const user = await sign(new TextEncoder().encode(secret), 'HS256', { docs: { notes: 'write' }, app: { docs: { other: 'read' } } });
    await expect(access.authorize(user, 'notes')).rejects.toMatchObject({ code: 'forbidden' });
    expect(await access.authorize(user, 'other')).toMatchObject({ permission: 'read' });
  });

  it('refuses a JWK Set over plain http to a non-loopback host, and a cooldown under 1 s', async () => {
    await expect(startRelay({ authJwks: 'http://idp.example/jwks.json' })).rejects.toThrow(/https/);
    await expect(startRelay({ authJwks: 'https://127.0.0.1:9/jwks.json', authJwksCooldownMs: 10 })).rejects.toThrow(/at least 1000/);
  });
});
