import { readFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ProtocolClient, type ProtocolClientOptions } from './protocol-client.js';
import { killRelay, spawnRelay, type RelayProcess } from './relay-process.js';

/**
 * Support for the adversarial suite (test/adversarial): a real relay process on port 0 with its
 * own data directory, its resident memory, and a bystander client whose round trips show whether
 * the relay still serves others while it is under attack.
 *
 * Heavy variants run with ATTACK_HEAVY=1 (`heavy` below); CI runs the light ones.
 */
export const heavy = process.env['ATTACK_HEAVY'] === '1';

export interface AttackedRelay extends RelayProcess {
  dataDir: string;
  /** Resident set size of the relay process now, in bytes (Linux /proc). */
  rss(): Promise<number>;
  /** SIGKILLs the relay (if still running) and removes its data directory. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts `capsync-server` from source with SQLite in a fresh temp dir; `await using` stops it. */
export async function startAttackedRelay(args: string[] = [], env: Record<string, string> = {}): Promise<AttackedRelay> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'capsync-attack-'));
  const relay = await spawnRelay(['--data', dataDir, ...args], env);
  return {
    ...relay,
    dataDir,
    rss: () => rssOf(relay.child.pid!),
    async [Symbol.asyncDispose]() {
      await killRelay(relay);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resident set size of process `pid` in bytes, from /proc/<pid>/status. */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/**
 * A well-behaved client of another document, pinging the relay while an attack runs: `stop()`
 * returns the round trips it measured (ms). A relay stalled by the attack shows as a long
 * round trip, or as a ping never answered within `timeoutMs` (which throws).
 */
export async function startBystander(
  url: string,
  docName = 'bystander',
  timeoutMs = 10_000,
  /** Connection options, e.g. `{ headers: { authorization: 'Bearer ...' } }` on a relay with auth. */
  options: ProtocolClientOptions = {},
): Promise<{ stop(): Promise<number[]>; client: ProtocolClient }> {
  const client = await ProtocolClient.synced(`${url}/${docName}`, options);
  const rtts: number[] = [];
  let running = true;
  let id = 0;
  const loop = (async () => {
    while (running) {
      const sent = performance.now();
      const pingId = ++id;
      client.sendMessage({ type: 'ping', id: pingId });
      await client.waitFor(() => client.received.some((m) => m.type === 'pong' && m.id === pingId), `pong ${pingId}`, timeoutMs);
      rtts.push(performance.now() - sent);
      // Paced, so the bystander itself is no load on the relay.
      await new Promise((r) => setTimeout(r, PING_INTERVAL_MS));
      client.received.length = 0;
    }
  })();
  return {
    client,
    async stop() {
      running = false;
      await loop;
      await client.close();
      return rtts;
    },
  };
}

const PING_INTERVAL_MS = 20;

/** The largest value, 0 for none. */
export function worst(values: number[]): number {
  return values.reduce((a, b) => Math.max(a, b), 0);
}
