/**
 * A throwaway Redis for Hocuspocus's Redis extension: Debian's redis-server
 * (`apt-get install redis-server`; never its system service), started as a child of the bench on
 * a free port of 127.0.0.1 in a temporary directory, without persistence (`--save ''
 * --appendonly no`), stopped and removed after.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './postgres.js';

const START_TIMEOUT_MS = 10_000;

export interface BenchRedis {
  readonly port: number;
  readonly version: string;
  readonly pid: number;
  close(): Promise<void>;
}

export async function startRedis(binary = process.env['REDIS_SERVER'] ?? 'redis-server'): Promise<BenchRedis> {
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) throw new Error(`${binary} not found (apt-get install redis-server, or set REDIS_SERVER)`);
  const version = probe.stdout.trim();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-bench-redis-'));
  const port = await freePort();
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const killNow = (): void => {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', killNow);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within ${START_TIMEOUT_MS} ms:\n${out}`)), START_TIMEOUT_MS);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited before it was ready:\n${out}`));
      });
    });
  } catch (err) {
    killNow();
    process.off('exit', killNow);
    throw err;
  }
  child.stdout!.resume(); // keep draining its log
  return {
    port,
    version,
    pid: child.pid!,
    async close() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      process.off('exit', killNow);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
