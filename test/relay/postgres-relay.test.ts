import { randomBytes, randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { describePostgres } from '../support/describe-postgres.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { waitForMetric } from '../support/relay-observe.js';
import { RawLocks } from '../support/raw-locks.js';
import { tempDir } from '../support/relay-fixture.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';

describePostgres('a relay on PostgreSQL (capsync-server --postgres)', (server) => {
  it('keeps an acknowledged update through a SIGKILL, and its lock tokens keep increasing', async () => {
    const url = await server().createDatabase();
    // --data is not where the relay keeps anything of a PostgreSQL relay's: the second start gets a fresh one.
    const data = tempDir('capsync-pg-relay-');
    const otherData = tempDir('capsync-pg-relay-');
    const marker = `<${randomUUID()}>`;
    try {
      let relay = await spawnRelay(['--postgres', url, '--data', data.dir]);
      let tokenBefore: number;
      try {
        expect(relay.logs.find((l) => l['msg'] === 'relay listening')).toMatchObject({ storage: 'postgres', database: url, locks: 'postgres' });
        const writer = await ProtocolClient.synced(`${relay.url}/pg-doc`);
        const seq = writer.type(marker);
        await writer.waitFor(() => writer.ackedSeq >= seq || writer.closeInfo || undefined, 'the ack', 10_000);
        expect(writer.closeInfo).toBeNull();
        const locks = await RawLocks.open(relay.url, { ownerKey: randomBytes(16).toString('base64url') });
        const lease = await locks.request('acquire', 'stock', 0, 60_000, 0);
        expect(lease.code || 'ok').toBe('ok');
        tokenBefore = lease.token;
        expect(await locks.code('release', 'stock', tokenBefore)).toBe('ok');
        locks.close();
        // A crash: no shutdown, no chance to write anything more.
        await killRelay(relay, 'SIGKILL');
      } finally {
        await killRelay(relay);
      }

      relay = await spawnRelay(['--postgres', url, '--data', otherData.dir]);
      try {
        const reader = await ProtocolClient.synced(`${relay.url}/pg-doc`);
        expect(reader.text).toContain(marker);
        await reader.close();
        const locks = await RawLocks.open(relay.url, { ownerKey: randomBytes(16).toString('base64url') });
        // Tokens increase per key, across restarts: the lock authority is the database.
        const lease = await locks.request('acquire', 'stock', 0, 60_000, 0);
        expect(lease.code || 'ok').toBe('ok');
        expect(lease.token).toBeGreaterThan(tokenBefore);
        locks.close();
      } finally {
        await killRelay(relay, 'SIGTERM');
      }
    } finally {
      data.remove();
      otherData.remove();
    }
  });

  it('refuses to start on a database whose schema is newer, saying so', async () => {
    const url = await server().createDatabase();
    const data = tempDir('capsync-pg-relay-');
    try {
      // A relay creates the schema; then a "newer capsync" records a migration it does not know.
      const relay = await spawnRelay(['--postgres', url, '--data', data.dir]);
      await killRelay(relay, 'SIGTERM');
      const pg = (await import('pg')).default;
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query('INSERT INTO capsync_schema_migrations (version) SELECT max(version) + 1 FROM capsync_schema_migrations');
      await client.end();
      await expect(spawnRelay(['--postgres', url, '--data', data.dir])).rejects.toThrow(/newer than this relay understands/);
    } finally {
      data.remove();
    }
  });

  // Last: it stops the suite's server (and starts it again).
  it('keeps serving while the database is down: no ack, /readyz 503, the session stays open, locks unavailable within their deadline; once it is back, what it accepted is committed and acknowledged', async () => {
    const url = await server().createDatabase();
    const data = tempDir('capsync-pg-relay-');
    const lockTimeoutMs = 1_000;
    const relay = await spawnRelay(['--postgres', url, '--data', data.dir, '--lock-timeout-ms', String(lockTimeoutMs)]);
    try {
      const writer = await ProtocolClient.synced(`${relay.url}/down`);
      const first = writer.type('<before>');
      await writer.waitFor(() => writer.ackedSeq >= first || undefined, 'the first ack', 10_000);
      const locks = await RawLocks.open(relay.url, { ownerKey: randomBytes(16).toString('base64url') });
      const held = await locks.request('acquire', 'held', 0, 60_000, 0);
      expect(held.code || 'ok').toBe('ok');
      await server().stop();
      let second: number;
      try {
        expect((await fetch(`${relay.httpUrl}/readyz`)).status).toBe(503);
        // The lock authority is the database: every lock operation answers unavailable, in time.
        for (const [op, key, token, ttlMs] of [['acquire', 'free', 0, 1_000], ['renew', 'held', held.token, 60_000], ['release', 'held', held.token, 0]] as const) {
          const started = performance.now();
          expect(await locks.code(op, key, token, ttlMs, 0), `${op} while the database is down`).toBe('unavailable');
          expect(performance.now() - started, `${op} answered after`).toBeLessThan(lockTimeoutMs + 500);
        }
        second = writer.type('<during>');
        // The relay tries the append again (the database cannot be reached): no ack, no close.
        await waitForMetric(relay.httpUrl, 'capsync_storage_retries_total', {}, 1, 15_000);
        expect(writer.ackedSeq, 'an update acknowledged while the database was down').toBeLessThan(second);
        expect(writer.closeInfo).toBeNull();
      } finally {
        await server().start();
      }
      await writer.waitFor(() => writer.ackedSeq >= second || undefined, 'the ack once the database is back', 30_000);
      expect((await fetch(`${relay.httpUrl}/readyz`)).status).toBe(200);
      // The lease taken before outlived the outage in the database: still held, still its holder's.
      expect(await locks.code('release', 'held', held.token)).toBe('ok');
      locks.close();
      expect(relay.child.exitCode).toBeNull();
      const again = await ProtocolClient.synced(`${relay.url}/down`);
      const third = again.type('<after>');
      await again.waitFor(() => again.ackedSeq >= third || undefined, 'an ack after the restart', 10_000);
      expect(again.text).toContain('<before>');
      expect(again.text).toContain('<during>');
      await again.close();
      await writer.close();
    } finally {
      await killRelay(relay, 'SIGTERM');
      data.remove();
    }
  });
});
