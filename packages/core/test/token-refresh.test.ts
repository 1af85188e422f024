import { describe, expect, it } from 'vitest';
import { MAX_REFRESH_TOKEN_LENGTH, decodeMessage, encodeMessage } from '../src/protocol/messages.js';
import { MIN_REFRESH_DELAY_MS, REFRESH_LEAD_MS, refreshDelayMs, tokenExpiry } from '../src/session/token-refresh.js';

function jwt(claims: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'HS256' })}.${part(claims)}.signature`;
}

describe('token refresh', () => {
  it('reads exp without verifying; anything else has no expiry', () => {
    expect(tokenExpiry(jwt({ sub: 'a', exp: 1_800_000_000 }))).toBe(1_800_000_000_000);
    expect(tokenExpiry(jwt({ sub: 'a' }))).toBeUndefined();
    expect(tokenExpiry(jwt({ exp: '1800000000' }))).toBeUndefined();
    expect(tokenExpiry('not-a-jwt')).toBeUndefined();
    expect(tokenExpiry('a.%%%.c')).toBeUndefined();
  });

  it('refreshes at 80 % of the remaining life or 30 s before expiry, whichever is sooner, never sooner than the bound', () => {
    const now = 1_000_000;
    expect(refreshDelayMs(now + 3_600_000, now)).toBe(2_880_000); // an hour: at 80 %
    expect(refreshDelayMs(now + 100_000, now)).toBe(100_000 - REFRESH_LEAD_MS); // 100 s: 30 s before (sooner than 80 s)
    expect(refreshDelayMs(now + 60_000, now)).toBe(30_000);
    expect(refreshDelayMs(now + 3_000, now)).toBe(MIN_REFRESH_DELAY_MS); // short-lived: the bound
    expect(refreshDelayMs(now + 1_000, now)).toBe(500); // shorter than the bound: half its life, still in time
    expect(refreshDelayMs(now, now)).toBeNull();
  });

  it('token-refresh and permission round-trip; an oversized token or unknown permission is a bad message', () => {
    for (const msg of [{ type: 'token-refresh', token: 'abc.def.ghi' }, { type: 'permission', permission: 'read' }, { type: 'permission', permission: 'write' }] as const) {
      expect(decodeMessage(encodeMessage(msg))).toEqual(msg);
    }
    expect(() => decodeMessage(encodeMessage({ type: 'token-refresh', token: 'x'.repeat(MAX_REFRESH_TOKEN_LENGTH + 1) }))).toThrow(/max/);
    const bad = encodeMessage({ type: 'permission', permission: 'read' });
    bad[bad.length - 1] = 7;
    expect(() => decodeMessage(bad)).toThrow(/unknown permission/);
  });
});
