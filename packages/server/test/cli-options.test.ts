import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CliError, FLAGS, helpText, parseCli } from '../src/cli-options.js';
import { resolveOptions } from '../src/config.js';

/** The options of a successful, non-help parse. */
function options(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const result = parseCli(argv, env);
  if (result.help) throw new Error('expected options, got help');
  return result.options;
}

describe('parseCli', () => {
  it('returns only the log level when nothing is given, leaving the rest to the relay defaults', () => {
    expect(options([])).toEqual({ logLevel: 'info' });
  });

  it('maps every flag onto relay options', () => {
    const argv = [
      '--port=0',
      '--host',
      '0.0.0.0',
      '--data',
      '/var/lib/capsync',
      '--storage',
      'memory',
      '--sqlite-sync',
      'normal',
      '--auth-secret',
      's3cret',
      '--auth-issuer',
      'https://auth.example',
      '--auth-audience',
      'capsync',
      '--max-message-bytes',
      '1024',
      '--send-buffer-limit',
      '2048',
      '--idle-timeout-ms',
      '0',
      '--compact-updates',
      '10',
      '--compact-bytes',
      '4096',
      '--etcd',
      'http://10.0.0.1:2379, http://10.0.0.2:2379',
      '--lock-timeout-ms',
      '750',
      '--log-level',
      'debug',
    ];
    expect(options(argv)).toEqual({
      port: 0,
      host: '0.0.0.0',
      dataDir: '/var/lib/capsync',
      storage: 'memory',
      sqliteSync: 'normal',
      authSecret: 's3cret',
      authIssuer: 'https://auth.example',
      authAudience: 'capsync',
      maxMessageBytes: 1024,
      sendBufferLimit: 2048,
      idleTimeoutMs: 0,
      compaction: { maxUpdates: 10, maxBytes: 4096 },
      etcd: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'],
      lockTimeoutMs: 750,
      logLevel: 'debug',
    });
  });

  it('reads the identity provider options: the public key file at startup, the JWK Set URL and the docs claim', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'capsync-key-'));
    const file = path.join(dir, 'idp.pem');
    writeFileSync(file, '-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n');
    expect(options(['--auth-public-key', file, '--auth-jwks', 'https://idp.example/jwks.json', '--auth-docs-claim', 'app.docs'])).toEqual({
      authPublicKey: '-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n',
      authJwks: 'https://idp.example/jwks.json',
      authDocsClaim: 'app.docs',
      logLevel: 'info',
    });
    expect(() => parseCli(['--auth-public-key', path.join(dir, 'missing.pem')], {})).toThrow(CliError);
    expect(() => resolveOptions({ authJwks: 'ftp://idp.example/jwks' })).toThrow(/http/);
    rmSync(dir, { recursive: true });
  });

  it('refuses etcd endpoints that are not http(s) URLs, and a zero lock timeout', () => {
    expect(() => options(['--etcd', 'etcd-1:2379'])).toThrow(CliError);
    expect(() => options(['--etcd', ','])).toThrow(CliError);
    expect(() => options(['--lock-timeout-ms', '0'])).toThrow(CliError);
  });

  it('takes --peer repeatedly (or CAPSYNC_PEER as a list) and the mesh settings', () => {
    expect(options(['--peer', 'ws://a:4000', '--peer', 'wss://b.example/', '--peer-mode', 'replicate-all', '--relay-id', 'eu-1', '--lock-authority', 'ws://a:4000'])).toMatchObject({
      peers: ['ws://a:4000', 'wss://b.example/'],
      peerMode: 'replicate-all',
      relayId: 'eu-1',
      lockAuthority: 'ws://a:4000',
    });
    expect(options([], { CAPSYNC_PEER: 'ws://a:1, ws://b:2' })).toMatchObject({ peers: ['ws://a:1', 'ws://b:2'] });
    expect(resolveOptions(options(['--peer', 'ws://a:1/', '--peer', 'ws://b:2', '--peer-token', 'mesh-token'])!)).toMatchObject({
      peers: ['ws://a:1', 'ws://b:2'],
      meshSize: 3,
      peerMode: 'on-demand',
    });
    // Peers without a relay credential: every link would be refused.
    expect(() => resolveOptions(options(['--peer', 'ws://a:1'])!)).toThrow(/authSecret .* or peerToken/);
    expect(() => options(['--peer', 'http://a:1'])).toThrow(CliError);
    expect(() => options(['--peer-mode', 'all'])).toThrow(CliError);
    expect(() => options(['--mesh-size', '0'])).toThrow(CliError);
  });

  it('reads CAPSYNC_* environment variables', () => {
    const env = {
      CAPSYNC_PORT: '8080',
      CAPSYNC_HOST: '::',
      CAPSYNC_DATA: './db',
      CAPSYNC_STORAGE: 'sqlite',
      CAPSYNC_SQLITE_SYNC: 'full',
      CAPSYNC_AUTH_SECRET: 'env-secret',
      CAPSYNC_AUTH_ISSUER: 'iss',
      CAPSYNC_AUTH_AUDIENCE: 'aud',
      CAPSYNC_MAX_MESSAGE_BYTES: '100',
      CAPSYNC_SEND_BUFFER_LIMIT: '200',
      CAPSYNC_IDLE_TIMEOUT_MS: '300',
      CAPSYNC_COMPACT_UPDATES: '7',
      CAPSYNC_COMPACT_BYTES: '700',
      CAPSYNC_LOG_LEVEL: 'warn',
    };
    expect(options([], env)).toEqual({
      port: 8080,
      host: '::',
      dataDir: './db',
      storage: 'sqlite',
      sqliteSync: 'full',
      authSecret: 'env-secret',
      authIssuer: 'iss',
      authAudience: 'aud',
      maxMessageBytes: 100,
      sendBufferLimit: 200,
      idleTimeoutMs: 300,
      compaction: { maxUpdates: 7, maxBytes: 700 },
      logLevel: 'warn',
    });
  });

  it('lets a flag win over its environment variable, and keeps the other variables', () => {
    const env = { CAPSYNC_PORT: '8080', CAPSYNC_AUTH_SECRET: 'from-env', CAPSYNC_HOST: 'env-host' };
    expect(options(['--port', '9090', '--auth-secret', 'from-flag'], env)).toEqual({
      port: 9090,
      authSecret: 'from-flag',
      host: 'env-host',
      logLevel: 'info',
    });
  });

  it('ignores empty environment variables and unrelated ones', () => {
    expect(options([], { CAPSYNC_PORT: '', CAPSYNC_AUTH_SECRET: '', PORT: '1234', CAPSYNC_UNKNOWN: 'x' })).toEqual({ logLevel: 'info' });
  });

  it('takes --max-sessions-per-socket (or CAPSYNC_MAX_SESSIONS_PER_SOCKET), at least 1; the relay default is 2000', () => {
    expect(options(['--max-sessions-per-socket', '5']).maxSessionsPerSocket).toBe(5);
    expect(options([], { CAPSYNC_MAX_SESSIONS_PER_SOCKET: '7' }).maxSessionsPerSocket).toBe(7);
    expect(() => parseCli(['--max-sessions-per-socket', '0'], {})).toThrow(CliError);
    expect(resolveOptions({}).maxSessionsPerSocket).toBe(2000);
  });

  it('takes --mux on|off (or CAPSYNC_MUX); the relay serves the multiplexed endpoint by default', () => {
    expect(options(['--mux', 'off']).mux).toBe(false);
    expect(options([], { CAPSYNC_MUX: 'on' }).mux).toBe(true);
    expect(() => parseCli(['--mux', 'no'], {})).toThrow(CliError);
    expect(resolveOptions({}).mux).toBe(true);
  });

  it('combines the two compaction thresholds from flag and environment', () => {
    expect(options(['--compact-bytes', '99'], { CAPSYNC_COMPACT_UPDATES: '5' }).compaction).toEqual({ maxUpdates: 5, maxBytes: 99 });
  });

  it('returns help for --help and -h, also next to other flags', () => {
    expect(parseCli(['--help'], {})).toEqual({ help: true });
    expect(parseCli(['-h'], {})).toEqual({ help: true });
    expect(parseCli(['--port', '1', '--help'], {})).toEqual({ help: true });
  });

  it.each([
    [['--port', 'abc']],
    [['--port', '-1']],
    [['--port', '1.5']],
    [['--max-message-bytes', '1e3x']],
    [['--idle-timeout-ms', 'soon']],
    [['--compact-updates', '-5']],
    [['--storage', 'postgres']],
    [['--sqlite-sync', 'off']],
  ])('throws CliError for the invalid value %j', (argv) => {
    expect(() => parseCli(argv, {})).toThrow(CliError);
  });

  it('throws CliError for an invalid environment value, naming the setting', () => {
    expect(() => parseCli([], { CAPSYNC_PORT: 'eighty' })).toThrow(CliError);
    expect(() => parseCli([], { CAPSYNC_STORAGE: 'redis' })).toThrow(/storage/);
  });

  it('takes --postgres, else CAPSYNC_POSTGRES, else DATABASE_URL; only postgres:// or postgresql:// URLs, never echoed back', () => {
    const url = 'postgres://capsync:pw@db:5432/capsync';
    expect(options(['--postgres', url]).postgres).toBe(url);
    expect(options([], { CAPSYNC_POSTGRES: url }).postgres).toBe(url);
    expect(options([], { DATABASE_URL: 'postgresql://db/x' }).postgres).toBe('postgresql://db/x');
    expect(options([], { CAPSYNC_POSTGRES: url, DATABASE_URL: 'postgresql://db/x' }).postgres).toBe(url);
    expect(options(['--postgres', url], { DATABASE_URL: 'postgresql://db/x' }).postgres).toBe(url);
    expect(() => parseCli(['--postgres', 'mysql://u:hidden@db/x'], {})).toThrow(/^--postgres must be a postgres:\/\/ or postgresql:\/\/ URL$/);
    expect(() => parseCli([], { DATABASE_URL: 'mysql://u:hidden@db/x' })).toThrow(/^DATABASE_URL is set but is not a postgres/);
  });

  it('validates the flag, not the environment variable it overrides', () => {
    expect(options(['--port', '5'], { CAPSYNC_PORT: 'garbage' }).port).toBe(5);
  });

  it.each([[['--verbose']], [['--port']], [['serve']], [['--help=yes']], [['-x']]])('throws CliError for unknown or malformed input %j', (argv) => {
    expect(() => parseCli(argv, {})).toThrow(CliError);
  });

  // parseCli accepts these, then the relay fails at startup with a stack trace (exit 1)
  // instead of a usage message (exit 2). See the report of this test file.
  it.each([
    [['--port', '70000']],
    [['--max-message-bytes', '0']],
    [['--send-buffer-limit', '0']],
    [['--compact-updates', '0']],
    [['--compact-bytes', '0']],
    [['--log-level', 'loud']],
  ])('throws CliError for %j, which the relay cannot start with', (argv) => {
    expect(() => parseCli(argv, {})).toThrow(CliError);
  });

  it('produces options resolveOptions accepts', () => {
    const parsed = options(['--port', '0', '--max-message-bytes', '1', '--compact-updates', '1', '--compact-bytes', '1']);
    expect(() => resolveOptions(parsed)).not.toThrow();
  });
});

describe('helpText and FLAGS', () => {
  it('lists every flag with its environment variable', () => {
    const help = helpText();
    for (const f of FLAGS) {
      expect(help).toContain(`--${f.flag}`);
      expect(help).toContain(f.env);
    }
    expect(help).toContain('--help');
  });

  it('names each variable after its flag', () => {
    for (const f of FLAGS) expect(f.env).toBe(`CAPSYNC_${f.flag.toUpperCase().replaceAll('-', '_')}`);
  });
});

describe('webhook flags', () => {
  it('takes repeated --webhook endpoints, each with or without an event filter, and the other settings', () => {
    const o = options([
      '--webhook', 'https://a.example/hooks',
      '--webhook', 'document.changed+document.deleted@https://b.example/hooks',
      '--webhook-secret', 's3cret',
      '--webhook-document', 'json',
      '--webhook-expire-ms', '60000',
    ]);
    expect(o.webhooks).toEqual({
      endpoints: [{ url: 'https://a.example/hooks' }, { url: 'https://b.example/hooks', events: ['document.changed', 'document.deleted'] }],
      secret: 's3cret',
      document: 'json',
      expireMs: 60_000,
    });
    expect(options([], { CAPSYNC_WEBHOOK: 'http://x.example/1,connection.opened@http://y.example/2', CAPSYNC_WEBHOOK_SECRET: 'k' }).webhooks?.endpoints).toEqual([
      { url: 'http://x.example/1' },
      { url: 'http://y.example/2', events: ['connection.opened'] },
    ]);
  });

  it('refuses an unknown event, a URL that is not http(s), an unknown payload mode; createRelay refuses webhooks without a secret', () => {
    expect(() => parseCli(['--webhook', 'document.exploded@https://a.example/'], {})).toThrow(/unknown event/);
    expect(() => parseCli(['--webhook', 'ftp://a.example/'], {})).toThrow(CliError);
    expect(() => parseCli(['--webhook-document', 'xml'], {})).toThrow(CliError);
    expect(() => resolveOptions({ webhooks: { endpoints: ['https://a.example/'], secret: '' } })).toThrow(/secret is required/);
  });
});
