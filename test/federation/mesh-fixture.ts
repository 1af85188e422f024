/**
 * Relays peered into a mesh for federation tests: in-process relays on port 0 with real
 * SQLite, each one's peer links optionally through a FaultProxy so a test can partition them.
 */
import type { PeerEndpoint } from '@capsync/server';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { FaultProxy } from '../support/fault-proxy.js';
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
  proxies: (FaultProxy | undefined)[][];
  close(): Promise<void>;
}

/** The relay credential the test meshes share (open relays trust only it as a peer). */
export const MESH_TOKEN = 'test-mesh-token';

/**
 * Starts `n` relays, each peering with every other (as a mesh is deployed: every relay lists
 * all the others), each link through its own proxy: relay i reaches relay j through
 * proxies[i][j]. Proxies are started first (pointing nowhere yet) so every relay can be
 * given its peers' addresses at start.
 */
export async function startMesh(n: number, options: Parameters<typeof startRelay>[0] = {}): Promise<Mesh> {
  const proxies: (FaultProxy | undefined)[][] = Array.from({ length: n }, () => Array<FaultProxy | undefined>(n).fill(undefined));
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) proxies[i]![j] = await FaultProxy.start(1, { mode: 'reset' });
  const relays: TestRelay[] = [];
  for (let i = 0; i < n; i++) {
    const peers = proxies[i]!.filter((p): p is FaultProxy => p !== undefined).map((p) => p.url);
    relays.push(await startRelay({ peerToken: MESH_TOKEN, ...options, relayId: `r${i}`, peers, meshSize: n }));
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const p = proxies[i]![j];
      if (!p) continue;
      p.setTarget(relays[j]!.port);
      p.setMode('pass');
    }
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

/** Cuts (or, with `pass`, heals) both directions between relays i and j. */
export function cut(mesh: Mesh, i: number, j: number, mode: 'reset' | 'hold' | 'pass' = 'reset'): void {
  mesh.proxies[i]![j]?.setMode(mode);
  mesh.proxies[j]![i]?.setMode(mode);
}
