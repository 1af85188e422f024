import { afterAll, describe, expect, it } from 'vitest';
import { CloseCode } from '@capsync/core';
import { ProtocolClient } from '../support/protocol-client.js';
import { tempDir } from '../support/relay-fixture.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';

describe('capsync-server stops cleanly on SIGTERM', () => {
  const tmp = tempDir();
  afterAll(() => tmp.remove());

  it('closes connections with GoingAway, commits what it accepted, exits 0', async () => {
    const relay = await spawnRelay(['--data', tmp.dir]);
    const c = await ProtocolClient.synced(`${relay.url}/graceful`);
    for (let i = 0; i < 200; i++) c.type(`<${i}>`);
    await c.waitForAck(c.seq);
    relay.child.kill('SIGTERM');
    const [closed, exit] = await Promise.all([c.waitClosed(), relay.exited]);
    expect(closed.code).toBe(CloseCode.GoingAway);
    expect(exit.code).toBe(0);
    expect(relay.logs.some((l) => l['msg'] === 'relay stopped')).toBe(true);

    const again = await spawnRelay(['--data', tmp.dir]);
    try {
      const reader = await ProtocolClient.synced(`${again.url}/graceful`);
      expect(reader.text).toBe(c.text);
      await reader.close();
    } finally {
      await killRelay(again, 'SIGTERM');
    }
  });

  it('prints --help and refuses unknown flags', async () => {
    const { execFile } = await import('node:child_process');
    const { CLI_PATH } = await import('../support/relay-process.js');
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        execFile(process.execPath, ['--conditions=source', '--import', 'tsx', CLI_PATH, ...args], (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
        );
      });
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--port', '--host', '--data', '--auth-secret', 'CAPSYNC_PORT']) expect(help.out).toContain(flag);
    const bad = await run(['--no-such-flag']);
    expect(bad.code).toBe(2);
    expect(bad.out).toMatch(/no-such-flag/);
  });
});
