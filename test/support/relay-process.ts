import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CLI_PATH = path.resolve(here, '../../packages/server/src/cli.ts');

export interface RelayProcess {
  child: ChildProcess;
  url: string;
  httpUrl: string;
  /** Every JSON log line printed so far. */
  logs: Record<string, unknown>[];
  /** The last 8 KiB it wrote to stderr (an uncaught error's stack, for one). */
  stderr(): string;
  /** Resolves with the exit code (or signal) once the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Runs `capsync-server` from source as a real child process (port 0 unless given) and
 * resolves once it logged 'ready'. Kill it with `child.kill('SIGKILL')` to simulate a crash.
 */
export async function spawnRelay(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<RelayProcess> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', CLI_PATH, '--port', '0', '--log-level', 'info', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A test that times out never reaches its cleanup: never leave a relay behind the test process.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8_192)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const ready = new Promise<{ url: string; httpUrl: string }>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry['msg'] === 'ready') resolve({ url: String(entry['url']), httpUrl: String(entry['httpUrl']) });
    });
    void exited.then(({ code, signal }) => reject(new Error(`relay exited before ready (code ${code}, signal ${signal}): ${stderr}`)));
  });
  let urls: { url: string; httpUrl: string };
  try {
    urls = await withTimeout(ready, timeoutMs, 'relay process to be ready');
  } catch (err) {
    // Not left behind: it would become ready later and hold the port a retry asks for.
    child.kill('SIGKILL');
    await exited;
    const last = logs.slice(-5).map((l) => JSON.stringify(l)).join(' ');
    throw new Error(`${(err as Error).message}${last ? `; last logs: ${last}` : ''}${stderr ? `; stderr: ${stderr.slice(-2_000)}` : ''}`, { cause: err });
  }
  return { child, url: urls.url, httpUrl: urls.httpUrl, logs, exited, stderr: () => stderr };
}

/** Kills the process (SIGKILL) if it is still running and waits for it to exit. */
export async function killRelay(p: RelayProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal);
  await p.exited;
}
