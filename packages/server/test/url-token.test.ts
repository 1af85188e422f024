import { describe, expect, it } from 'vitest';
import { redactUrl, tokenFromQuery } from '../src/auth/url-token.js';

describe('redactUrl', () => {
  it('redacts every token parameter whatever the case or percent-encoding of its name', () => {
    for (const url of ['/doc?token=secret', '/doc?TOKEN=secret', '/doc?%74oken=secret', '/doc?x=1&ToKeN=secret&y=2', '/doc?%54%4F%4B%45%4E=secret']) {
      const logged = redactUrl(url);
      expect(logged, url).not.toContain('secret');
      expect(logged).toContain('REDACTED');
      // What authentication reads from the URL is exactly what the log hides.
      expect(tokenFromQuery(url)).toBe('secret');
    }
    expect(redactUrl('/doc?token=a&token=b&x=1')).toBe('/doc?token=REDACTED&token=REDACTED&x=1');
    expect(redactUrl('/doc?x=1&y=2')).toBe('/doc?x=1&y=2');
    expect(redactUrl('/doc')).toBe('/doc');
    expect(redactUrl(undefined)).toBe('');
  });

  it('redacts tokens and passwords in absolute (peer) URLs', () => {
    expect(redactUrl('ws://relay-b:4000?token=secret')).toBe('ws://relay-b:4000?token=REDACTED');
    expect(redactUrl('wss://user:secret@relay-b:4000/x')).toBe('wss://user:REDACTED@relay-b:4000/x');
    expect(redactUrl('ws://relay-b:4000')).toBe('ws://relay-b:4000');
  });

  it('keeps a token written with a malformed escape out of the logs too', () => {
    expect(redactUrl('/doc?%zz=1&token=secret%zz')).not.toContain('secret');
  });
});
