import { describe, expect, it } from 'vitest';
import { OriginPolicy } from '../src/http/origin-policy.js';

describe('OriginPolicy', () => {
  it('lets requests without Origin through (not a browser), whatever the policy', () => {
    for (const policy of [new OriginPolicy(undefined, false), new OriginPolicy(['https://app.example'], true)]) {
      expect(policy.allows(undefined, 'relay.example:4000')).toBe(true);
    }
  });

  it('on an open relay allows only its own origin (Host naming its bound host) and loopback origins by default', () => {
    const open = new OriginPolicy(undefined, false, 'relay.example');
    expect(open.allows('https://relay.example:4000', 'relay.example:4000')).toBe(true);
    expect(open.allows('https://relay.example:4000', 'RELAY.example:4000')).toBe(true);
    for (const origin of ['http://localhost:5173', 'http://127.0.0.1:8080', 'http://[::1]:3000', 'https://localhost']) {
      expect(open.allows(origin, 'relay.example:4000'), origin).toBe(true);
    }
    for (const origin of ['https://evil.example', 'https://relay.example:4001', 'null', 'file://', 'chrome-extension://abc', 'not a url', 'http://localhost.evil.example']) {
      expect(open.allows(origin, 'relay.example:4000'), origin).toBe(false);
    }
    expect(open.allows('https://relay.example', undefined)).toBe(false);
  });

  it('on an open relay trusts Host as its own origin only for IP literals, localhost and its bound host (DNS rebinding)', () => {
    const open = new OriginPolicy(undefined, false, '0.0.0.0');
    // A rebinding page's Host and Origin both name its site: refused.
    expect(open.allows('http://evil.example:4000', 'evil.example:4000')).toBe(false);
    expect(open.allows('http://relay.example:4000', 'relay.example:4000')).toBe(false);
    // Addressed by IP literal (rebinding needs a DNS name) or localhost: the relay's own.
    expect(open.allows('http://10.0.0.5:4000', '10.0.0.5:4000')).toBe(true);
    expect(open.allows('http://[fd00::5]:4000', '[fd00::5]:4000')).toBe(true);
    expect(open.allows('http://localhost:4000', 'localhost:4000')).toBe(true);
    expect(open.allows('http://10.0.0.5:4000', '10.0.0.6:4000')).toBe(false);
    // Listed origins work whatever the Host.
    expect(new OriginPolicy(['http://relay.example:4000'], false).allows('http://relay.example:4000', 'relay.example:4000')).toBe(true);
  });

  it('with auth allows any origin by default; a configured list is exact; * allows all', () => {
    expect(new OriginPolicy(undefined, true).allows('https://anywhere.example', 'relay:4000')).toBe(true);
    const listed = new OriginPolicy(['https://app.example'], true);
    expect(listed.allows('https://app.example', 'relay:4000')).toBe(true);
    expect(listed.allows('https://app.example:8443', 'relay:4000')).toBe(false);
    expect(listed.allows('http://localhost:3000', 'relay:4000')).toBe(false);
    expect(new OriginPolicy(['*'], false).allows('https://evil.example', 'relay:4000')).toBe(true);
  });

  it('refuses with origin-not-allowed', () => {
    expect(new OriginPolicy(undefined, false).refusal('https://evil.example').code).toBe('origin-not-allowed');
  });
});
