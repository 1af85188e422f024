import type { IncomingMessage } from 'node:http';
import * as jose from 'jose';
import { describe, expect, it } from 'vitest';
import { AuthError, isCapsyncError } from '@capsync/core';
import { JwtAccess, OpenAccess, permissionFor } from '../src/auth/access.js';
import { selectProtocol, tokenFromRequest } from '../src/auth/token-from-request.js';

const SECRET = 'unit-test-secret-that-is-long-enough';
const key = new TextEncoder().encode(SECRET);
const nowSeconds = () => Math.floor(Date.now() / 1000);

async function sign(
  claims: jose.JWTPayload,
  opts: { alg?: 'HS256' | 'HS384' | 'HS512'; secret?: string } = {},
): Promise<string> {
  const signingKey = opts.secret ? new TextEncoder().encode(opts.secret) : key;
  // Tokens must expire: one in ten minutes unless the test says otherwise (`exp: undefined` for none).
  const withExp: jose.JWTPayload = 'exp' in claims ? claims : { ...claims, exp: nowSeconds() + 600 };
  if (withExp.exp === undefined) delete withExp.exp;
  return new jose.SignJWT(withExp).setProtectedHeader({ alg: opts.alg ?? 'HS256' }).sign(signingKey);
}

/** The AuthError `promise` rejects with (fails the test if it resolves or rejects otherwise). */
async function authErrorOf(promise: Promise<unknown>): Promise<AuthError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthError);
  return err as AuthError;
}

describe('permissionFor', () => {
  it('grants the permission of an exact document name', () => {
    expect(permissionFor({ handbook: 'read', notes: 'write' }, 'handbook')).toBe('read');
    expect(permissionFor({ handbook: 'read', notes: 'write' }, 'notes')).toBe('write');
  });

  it('grants nothing for documents the claim does not name', () => {
    expect(permissionFor({ handbook: 'read' }, 'handbook2')).toBeUndefined();
    expect(permissionFor({ handbook: 'read' }, 'Handbook')).toBeUndefined();
    expect(permissionFor({}, 'handbook')).toBeUndefined();
  });

  it('matches prefix patterns ending in *', () => {
    const docs = { 'team-a/*': 'write' };
    expect(permissionFor(docs, 'team-a/notes')).toBe('write');
    expect(permissionFor(docs, 'team-a/deep/nested')).toBe('write');
    expect(permissionFor(docs, 'team-b/notes')).toBeUndefined();
    // The prefix includes the '/', so the bare folder name is not matched.
    expect(permissionFor(docs, 'team-a')).toBeUndefined();
  });

  it('treats a lone * as every document', () => {
    expect(permissionFor({ '*': 'read' }, 'anything')).toBe('read');
    expect(permissionFor({ '*': 'read' }, 'a/b/c')).toBe('read');
  });

  it('prefers the exact name over any pattern, whichever grants more', () => {
    expect(permissionFor({ '*': 'write', 'team/*': 'write', 'team/handbook': 'read' }, 'team/handbook')).toBe('read');
    expect(permissionFor({ '*': 'read', 'team/*': 'read', 'team/notes': 'write' }, 'team/notes')).toBe('write');
  });

  it('prefers the longest matching prefix among patterns, in any key order', () => {
    const narrowLast = { '*': 'write', 'team/*': 'read', 'team/drafts/*': 'write' };
    const narrowFirst = { 'team/drafts/*': 'write', 'team/*': 'read', '*': 'write' };
    for (const docs of [narrowLast, narrowFirst]) {
      expect(permissionFor(docs, 'team/drafts/x')).toBe('write');
      expect(permissionFor(docs, 'team/handbook')).toBe('read');
      expect(permissionFor(docs, 'other')).toBe('write');
    }
  });

  it('matches a pattern as a plain string prefix, not by path segment', () => {
    expect(permissionFor({ 'team*': 'read' }, 'teammates')).toBe('read');
    expect(permissionFor({ 'team*': 'read' }, 'team')).toBe('read');
  });

  it('treats * only at the end as a pattern; elsewhere it is part of an exact name', () => {
    expect(permissionFor({ 'a*b': 'write' }, 'axxb')).toBeUndefined();
    expect(permissionFor({ 'a*b': 'write' }, 'a*b')).toBe('write');
  });

  it('ignores entries whose value is not read or write, so they neither grant nor shadow', () => {
    expect(permissionFor({ doc: 'admin' }, 'doc')).toBeUndefined();
    expect(permissionFor({ doc: true, '*': 'read' }, 'doc')).toBe('read');
    expect(permissionFor({ 'team/*': 'WRITE', '*': 'read' }, 'team/x')).toBe('read');
    expect(permissionFor({ 'team/*': null, '*': 'read' }, 'team/x')).toBe('read');
  });

  it('grants nothing when the claim is missing or not an object', () => {
    for (const docs of [undefined, null, 'write', 42, true]) expect(permissionFor(docs, 'doc')).toBeUndefined();
  });
});

describe('JwtAccess', () => {
  const access = new JwtAccess({ secret: SECRET });

  it('refuses an empty secret', () => {
    expect(() => new JwtAccess({ secret: '' })).toThrow();
  });

  it('grants the permission of the docs claim, with subject and expiry', async () => {
    const exp = nowSeconds() + 600;
    const token = await sign({ sub: 'alice', exp, docs: { 'notes/*': 'write', handbook: 'read' } });
    expect(await access.authorize(token, 'notes/today')).toEqual({ permission: 'write', subject: 'alice', expiresAt: exp * 1000 });
    expect(await access.authorize(token, 'handbook')).toEqual({ permission: 'read', subject: 'alice', expiresAt: exp * 1000 });
  });

  it('authenticates once and authorizes each document from the principal (a multiplexed socket)', async () => {
    const exp = nowSeconds() + 600;
    const principal = await access.authenticate(await sign({ sub: 'alice', exp, docs: { 'notes/*': 'write', handbook: 'read' } }));
    expect(access.authorizeDoc(principal, 'notes/a')).toEqual({ permission: 'write', subject: 'alice', expiresAt: exp * 1000 });
    expect(access.authorizeDoc(principal, 'handbook')).toEqual({ permission: 'read', subject: 'alice', expiresAt: exp * 1000 });
    expect(() => access.authorizeDoc(principal, 'secret')).toThrow(expect.objectContaining({ code: 'forbidden' }));
    // A principal kept past its token's expiry authorizes nothing more.
    expect(() => access.authorizeDoc({ ...principal, expiresAt: Date.now() - 1 }, 'notes/a')).toThrow(expect.objectContaining({ code: 'unauthorized' }));
    expect((await authErrorOf(access.authenticate('garbage'))).code).toBe('unauthorized');
  });

  it('accepts tokens without sub', async () => {
    const exp = nowSeconds() + 60;
    const token = await sign({ exp, docs: { doc: 'read' } });
    expect(await access.authorize(token, 'doc')).toEqual({ permission: 'read', expiresAt: exp * 1000 });
  });

  it('is unauthorized for a token without exp (it would never expire), saying so', async () => {
    const token = await sign({ sub: 'alice', exp: undefined, docs: { doc: 'write' } });
    const err = await authErrorOf(access.authorize(token, 'doc'));
    expect(err.code).toBe('unauthorized');
    expect(err.message).toMatch(/no expiry/);
  });

  it('is unauthorized for a token living longer than maxTokenLifetimeMs, from iat or from now', async () => {
    const capped = new JwtAccess({ secret: SECRET, maxTokenLifetimeMs: 3600_000 });
    const now = nowSeconds();
    expect((await capped.authorize(await sign({ iat: now, exp: now + 3600, docs: { doc: 'write' } }), 'doc')).permission).toBe('write');
    expect((await capped.authorize(await sign({ exp: now + 3500, docs: { doc: 'write' } }), 'doc')).permission).toBe('write');
    for (const claims of [
      { iat: now, exp: now + 3601 },
      { exp: now + 7200 },
      // Issued in the past, lifetime counted from iat: 2 h even though only 50 min remain.
      { iat: now - 4200, exp: now + 3000 },
      // A future iat does not shorten the lifetime counted from now.
      { iat: now + 86_400 * 365, exp: now + 86_400 * 365 + 60 },
    ]) {
      const err = await authErrorOf(capped.authorize(await sign({ ...claims, docs: { doc: 'write' } }), 'doc'));
      expect(err.code, JSON.stringify(claims)).toBe('unauthorized');
      expect(err.message).toMatch(/longer than the relay accepts/);
    }
    // The default cap is 24 h.
    expect((await authErrorOf(access.authorize(await sign({ exp: now + 25 * 3600, docs: { doc: 'write' } }), 'doc'))).code).toBe('unauthorized');
  });

  it.each(['HS256', 'HS384', 'HS512'] as const)('accepts %s tokens', async (alg) => {
    const token = await sign({ docs: { doc: 'write' } }, { alg });
    expect((await access.authorize(token, 'doc')).permission).toBe('write');
  });

  it('is unauthorized without a token', async () => {
    for (const token of [undefined, '']) {
      const err = await authErrorOf(access.authorize(token, 'doc'));
      expect(err.code).toBe('unauthorized');
    }
  });

  it('is unauthorized for an expired token, saying so', async () => {
    const token = await sign({ exp: nowSeconds() - 10, docs: { doc: 'write' } });
    const err = await authErrorOf(access.authorize(token, 'doc'));
    expect(err.code).toBe('unauthorized');
    expect(err.message).toMatch(/expired/);
    expect(err.cause).toBeInstanceOf(jose.errors.JWTExpired);
  });

  it('is unauthorized for a token not valid yet', async () => {
    const token = await sign({ nbf: nowSeconds() + 600, docs: { doc: 'write' } });
    expect((await authErrorOf(access.authorize(token, 'doc'))).code).toBe('unauthorized');
  });

  it('is unauthorized for a token signed with another secret', async () => {
    const token = await sign({ docs: { doc: 'write' } }, { secret: 'some-other-secret-entirely' });
    const err = await authErrorOf(access.authorize(token, 'doc'));
    expect(err.code).toBe('unauthorized');
    expect(err.message).toMatch(/invalid token/);
  });

  it('is unauthorized for malformed and unsigned tokens', async () => {
    const unsigned = new jose.UnsecuredJWT({ docs: { doc: 'write' } }).encode();
    const valid = await sign({ docs: { doc: 'write' } });
    const tampered = valid.replace(/\.[^.]+\./, `.${jose.base64url.encode(JSON.stringify({ docs: { '*': 'write' } }))}.`);
    for (const token of ['not-a-jwt', 'a.b.c', unsigned, tampered]) {
      const err = await authErrorOf(access.authorize(token, 'doc'));
      expect(isCapsyncError(err, 'unauthorized'), token).toBe(true);
    }
  });

  it('is forbidden for a valid token that grants nothing on the document', async () => {
    const token = await sign({ docs: { other: 'write', 'team/*': 'write' } });
    for (const doc of ['doc', 'team']) {
      const err = await authErrorOf(access.authorize(token, doc));
      expect(err.code).toBe('forbidden');
      expect(err.message).toContain(doc);
    }
    const noClaim = await sign({ sub: 'bob' });
    expect((await authErrorOf(access.authorize(noClaim, 'doc'))).code).toBe('forbidden');
  });

  it('enforces issuer and audience when configured', async () => {
    const strict = new JwtAccess({ secret: SECRET, issuer: 'https://auth.example', audience: 'capsync' });
    const docs = { doc: 'write' };
    const good = await sign({ iss: 'https://auth.example', aud: 'capsync', docs });
    expect((await strict.authorize(good, 'doc')).permission).toBe('write');
    const audList = await sign({ iss: 'https://auth.example', aud: ['other', 'capsync'], docs });
    expect((await strict.authorize(audList, 'doc')).permission).toBe('write');
    for (const claims of [
      { aud: 'capsync', docs },
      { iss: 'https://evil.example', aud: 'capsync', docs },
      { iss: 'https://auth.example', docs },
      { iss: 'https://auth.example', aud: 'other', docs },
    ]) {
      const err = await authErrorOf(strict.authorize(await sign(claims), 'doc'));
      expect(err.code).toBe('unauthorized');
    }
  });

  it('ignores issuer and audience when not configured', async () => {
    const token = await sign({ iss: 'anyone', aud: 'anything', docs: { doc: 'read' } });
    expect((await access.authorize(token, 'doc')).permission).toBe('read');
  });
});

describe('OpenAccess', () => {
  it('grants write on every document without a token, but relay trust to nobody', async () => {
    const open = new OpenAccess();
    expect(open.mode).toBe('open');
    expect(await open.authorize()).toEqual({ permission: 'write' });
    expect(await open.authorize('anything')).toEqual({ permission: 'write' });
  });

  it('grants relay trust only to the configured peer token', async () => {
    const open = new OpenAccess({ peerToken: 'mesh-secret' });
    expect(await open.authorize('mesh-secret')).toEqual({ permission: 'write', relay: true });
    expect(await open.authorize('mesh-secreT')).toEqual({ permission: 'write' });
    expect(await open.authorize('mesh')).toEqual({ permission: 'write' });
    expect(await open.authorize()).toEqual({ permission: 'write' });
    expect(open.authorizeDoc(await open.authenticate('mesh-secret'), 'any')).toEqual({ permission: 'write', relay: true });
  });
});

describe('tokenFromRequest', () => {
  const request = (url: string, headers: Record<string, string> = {}) => ({ url, headers }) as unknown as IncomingMessage;

  it('reads a Bearer Authorization header', () => {
    expect(tokenFromRequest(request('/doc', { authorization: 'Bearer abc.def.ghi' }))).toBe('abc.def.ghi');
  });

  it('reads a capsync.jwt.<token> sub-protocol', () => {
    expect(tokenFromRequest(request('/doc', { 'sec-websocket-protocol': 'capsync, capsync.jwt.abc.def.ghi' }))).toBe('abc.def.ghi');
  });

  it('reads the token query parameter', () => {
    expect(tokenFromRequest(request('/doc?x=1&token=abc.def.ghi'))).toBe('abc.def.ghi');
  });

  it('reads the token query parameter under any case or percent-encoding of its name (as log redaction does)', () => {
    expect(tokenFromRequest(request('/doc?TOKEN=abc'))).toBe('abc');
    expect(tokenFromRequest(request('/doc?%74oken=abc'))).toBe('abc');
    expect(tokenFromRequest(request('/doc?x=1&%54oKeN=abc&token=other'))).toBe('abc');
    expect(tokenFromRequest(request('/doc?tokens=abc'))).toBeUndefined();
  });

  it('prefers the header, then the sub-protocol, then the query', () => {
    const all = { authorization: 'Bearer from-header', 'sec-websocket-protocol': 'capsync, capsync.jwt.from-protocol' };
    expect(tokenFromRequest(request('/doc?token=from-query', all))).toBe('from-header');
    expect(tokenFromRequest(request('/doc?token=from-query', { 'sec-websocket-protocol': 'capsync.jwt.from-protocol' }))).toBe(
      'from-protocol',
    );
  });

  it('finds nothing without credentials or with a non-Bearer scheme', () => {
    expect(tokenFromRequest(request('/doc'))).toBeUndefined();
    expect(tokenFromRequest(request('/doc', { authorization: 'Basic dXNlcjpwdw==' }))).toBeUndefined();
    expect(tokenFromRequest(request('/doc', { 'sec-websocket-protocol': 'capsync' }))).toBeUndefined();
  });
});

describe('selectProtocol', () => {
  it('answers capsync when offered, so the token is never echoed back', () => {
    expect(selectProtocol(new Set(['capsync.jwt.secret', 'capsync']))).toBe('capsync');
  });

  it('answers the first offered protocol otherwise, and none when none is offered', () => {
    expect(selectProtocol(new Set(['y-websocket', 'other']))).toBe('y-websocket');
    expect(selectProtocol(new Set())).toBe(false);
  });
});
