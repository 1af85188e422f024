import * as Y from 'yjs';
import { ProtocolClient, type ProtocolClientOptions } from './protocol-client.js';
import { mintToken } from './tokens.js';

/** Helpers of the client id ownership tests: users by token `sub`, edits as updates, replicas under chosen ids. */

/** A synced wire-level client of `url` as `sub` (an hour-long HS256 token signed with `secret`). */
export async function connectAs(url: string, secret: string, sub: string, options: ProtocolClientOptions = {}): Promise<ProtocolClient> {
  return ProtocolClient.synced(url, { ...options, headers: { authorization: `Bearer ${await mintToken(secret, { sub, lifetimeS: 3600 })}` } });
}

/** The update `doc` emits for `edit`. */
export function updateOf(doc: Y.Doc, edit: () => void): Uint8Array {
  let update: Uint8Array | null = null;
  const capture = (u: Uint8Array) => (update = u);
  doc.on('update', capture);
  edit();
  doc.off('update', capture);
  return update!;
}

/** A replica of `from`'s document that writes under `clientId`. */
export function replicaAs(from: ProtocolClient, clientId: number): Y.Doc {
  const d = new Y.Doc();
  Y.applyUpdate(d, Y.encodeStateAsUpdate(from.doc));
  d.clientID = clientId; // after the apply: Yjs picks a fresh id when an update carries its own
  return d;
}

/** One update writing one map entry under each of `n` fresh client ids starting at `base`. */
export function manyClients(base: number, n: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const d = new Y.Doc();
    d.clientID = base + i;
    d.getMap('junk').set(`k${base + i}`, 0);
    parts.push(Y.encodeStateAsUpdate(d));
  }
  return Y.mergeUpdates(parts);
}
