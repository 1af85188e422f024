/**
 * Relays peered into a mesh for federation tests: in-process relays on port 0 with real
 * SQLite, each one's peer links optionally through a TcpProxy so a test can partition them.
 */
import type { PeerEndpoint } from '@capsync/server';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitForEvent } from '../support/wait.js';

/** Resolves once `ep` is up (or down, with `up: false`). */
export function whenEndpoint(ep: PeerEndpoint, up = true, timeoutMs = 10_000): Promise<true> {
  return waitForEvent(ep, up ? 'up' : 'down', () => ep.up === up || undefined, `peer ${ep.url} ${up ? 'up' : 'down'}`, timeoutMs) as Promise<true>;
}

/** Waits until every peer endpoint of every relay is up. */
export async function whenMeshUp(relays: TestRelay[], timeoutMs = 10_000): Promise<void> {
  await Promise.all(relays.flatMap((r) => r.relay.mesh.endpoints.map((ep) => whenEndpoint(ep, true, timeoutMs))));
}

export interface Mesh {
  relays: TestRelay[];
  /** proxies[i][j]: relay i's link to relay j (undefined on the diagonal or when not proxied). */
  proxies: (TcpProxy | undefined)[][];
  close(): Promise<void>;
}

/**
 * Starts `n` relays where relay i peers with every relay j < i (each pair linked once in
 * config: the later relay names the earlier one), each link through a proxy.
 */
export async function startMesh(n: number, options: Parameters<typeof startRelay>[0] = {}): Promise<Mesh> {
  const relays: TestRelay[] = [];
  const proxies: (TcpProxy | undefined)[][] = Array.from({ length: n }, () => Array<TcpProxy | undefined>(n).fill(undefined));
  for (let i = 0; i < n; i++) {
    const peers: string[] = [];
    for (let j = 0; j < i; j++) {
      const proxy = await TcpProxy.start(relays[j]!.port);
      proxies[i]![j] = proxy;
      peers.push(proxy.url);
    }
    relays.push(await startRelay({ ...options, relayId: `r${i}`, peers, meshSize: n }));
  }
  return {
    relays,
    proxies,
    close: async () => {
      await Promise.all(relays.map((r) => r.dispose()));
      await Promise.all(proxies.flat().map((p) => p?.close()));
    },
  };
}
