import { FaultProxy } from './fault-proxy.js';
import { startAttackedRelay, type AttackedRelay } from './attack.js';

/**
 * Relay processes peered into a mesh for the adversarial suite: every relay lists all the others,
 * each link through its own FaultProxy (relay i reaches relay j through proxies[i][j]), so a test
 * can partition them (`cut`). Proxies start first, pointing nowhere, so every relay is given its
 * peers' addresses at start; `await using` stops them all.
 */
export interface AttackedMesh {
  relays: AttackedRelay[];
  proxies: (FaultProxy | undefined)[][];
  /** Cuts (`reset`) or heals (`pass`) both directions between relays i and j. */
  cut(i: number, j: number, mode: 'reset' | 'pass'): void;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts `n` relay processes, relay i with `args` plus `--relay-id r<i>` and a `--peer` per other relay. */
export async function startAttackedMesh(n: number, args: string[]): Promise<AttackedMesh> {
  const proxies: (FaultProxy | undefined)[][] = Array.from({ length: n }, () => Array<FaultProxy | undefined>(n).fill(undefined));
  const relays: AttackedRelay[] = [];
  const dispose = async () => {
    await Promise.all(relays.map((r) => r[Symbol.asyncDispose]()));
    await Promise.all(proxies.flat().map((p) => p?.close()));
  };
  try {
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) proxies[i]![j] = await FaultProxy.start(1, { mode: 'reset' });
    for (let i = 0; i < n; i++) {
      const peers = proxies[i]!.flatMap((p) => (p ? ['--peer', p.url] : []));
      relays.push(await startAttackedRelay([...args, '--relay-id', `r${i}`, ...peers]));
    }
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const p = proxies[i]![j];
        if (!p) continue;
        p.setTarget(Number(new URL(relays[j]!.url).port));
        p.setMode('pass');
      }
    }
  } catch (err) {
    await dispose();
    throw err;
  }
  return {
    relays,
    proxies,
    cut(i, j, mode) {
      proxies[i]![j]?.setMode(mode);
      proxies[j]![i]?.setMode(mode);
    },
    [Symbol.asyncDispose]: dispose,
  };
}
