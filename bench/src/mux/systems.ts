/**
 * The clients the mux benchmark compares, each opening a set of documents until every one is
 * synced: capsync multiplexed (every document over one socket), capsync with a socket per
 * document (`multiplex: false`), and one y-websocket `WebsocketProvider` per document.
 * Each counts the WebSockets it constructs.
 */
import { createClient, type DocHandle, type WebSocketConstructor } from '@capsync/client';

export type CapsyncClient = ReturnType<typeof createClient>;
import { WebSocket as NodeWebSocket } from 'ws';
import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';

export const SYSTEMS = ['capsync-mux', 'capsync-per-doc', 'y-websocket'] as const;
export type System = (typeof SYSTEMS)[number];

export const SYSTEM_LABELS: Record<System, string> = {
  'capsync-mux': 'capsync, multiplexed (one socket per relay)',
  'capsync-per-doc': 'capsync, `multiplex: false` (one socket per document)',
  'y-websocket': 'y-websocket 3, one `WebsocketProvider` per document → @y/websocket-server',
};

/** A `ws` WebSocket class that counts the sockets made through it. */
export function countingWebSocket(counter: { sockets: number }): new (...args: ConstructorParameters<typeof NodeWebSocket>) => NodeWebSocket {
  return class CountingWebSocket extends NodeWebSocket {
    constructor(...args: ConstructorParameters<typeof NodeWebSocket>) {
      super(...args);
      counter.sockets++;
    }
  };
}

/** Documents open in one client, until `close`. */
export interface OpenDocs {
  docs: Y.Doc[];
  close(): Promise<void>;
}

/** Opens `names` in one capsync client and resolves once every one is synced with the relay. */
export async function openCapsync(
  url: string,
  names: string[],
  multiplex: boolean,
  counter: { sockets: number },
  timeoutMs: number,
): Promise<OpenDocs & { handles: DocHandle[]; client: CapsyncClient }> {
  const client = createClient({
    url,
    storage: 'memory',
    WebSocket: countingWebSocket(counter) as unknown as WebSocketConstructor,
    crossTab: false,
    multiplex,
  });
  try {
    const handles = await Promise.all(
      names.map(async (name) => {
        const handle = await client.open(name);
        await handle.whenSynced({ timeoutMs });
        return handle;
      }),
    );
    return { client, handles, docs: handles.map((h) => h.doc), close: () => client.close() };
  } catch (err) {
    await client.close();
    throw err;
  }
}

/** Opens one provider per name against `serverUrl` and resolves once every one has synced. */
export async function openProviders(serverUrl: string, names: string[], counter: { sockets: number }, timeoutMs: number): Promise<OpenDocs> {
  const WS = countingWebSocket(counter);
  // In Node every provider adds a process 'exit' listener of its own: thousands are expected here.
  process.setMaxListeners(0);
  const providers = names.map((name) => new WebsocketProvider(serverUrl, name, new Y.Doc(), { WebSocketPolyfill: WS as unknown as typeof WebSocket, disableBc: true }));
  const close = async (): Promise<void> => {
    for (const p of providers) p.destroy();
  };
  try {
    await Promise.all(providers.map((p) => whenProviderSynced(p, timeoutMs)));
    return { docs: providers.map((p) => p.doc), close };
  } catch (err) {
    await close();
    throw err;
  }
}

function whenProviderSynced(p: WebsocketProvider, timeoutMs: number): Promise<void> {
  if (p.synced) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`provider ${p.roomname} not synced within ${timeoutMs} ms`)), timeoutMs);
    const onSync = (state: boolean): void => {
      if (!state) return;
      clearTimeout(timer);
      p.off('sync', onSync);
      resolve();
    };
    p.on('sync', onSync);
  });
}
