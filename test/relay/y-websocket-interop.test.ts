import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { withTimeout } from '../support/wait.js';

/** Resolves once the provider reports synced. */
function whenSynced(p: WebsocketProvider): Promise<void> {
  if (p.synced) return Promise.resolve();
  return withTimeout(new Promise<void>((resolve) => p.once('sync', (s: boolean) => s && resolve())), 10_000, 'provider sync');
}

/** Resolves when `doc`'s text "t" equals `expected`, watching its update events. */
function whenText(doc: Y.Doc, expected: string): Promise<void> {
  const text = doc.getText('t');
  if (text.toString() === expected) return Promise.resolve();
  return withTimeout(
    new Promise<void>((resolve) => {
      const check = () => {
        if (text.toString() === expected) {
          doc.off('update', check);
          resolve();
        }
      };
      doc.on('update', check);
    }),
    10_000,
    `text "${expected}"`,
  );
}

describe('an unmodified y-websocket (v3) provider syncs through the relay', () => {
  let relay: TestRelay;
  const providers: WebsocketProvider[] = [];
  const provider = (doc: Y.Doc, room = 'interop') => {
    const p = new WebsocketProvider(relay.url, room, doc, { WebSocketPolyfill: WebSocket as never, disableBc: true });
    providers.push(p);
    return p;
  };

  beforeEach(async () => {
    relay = await startRelay();
  });
  afterEach(async () => {
    for (const p of providers.splice(0)) p.destroy();
    await relay.dispose();
  });

  it('two providers converge, including edits made before connecting', async () => {
    const a = new Y.Doc();
    const b = new Y.Doc();
    a.getText('t').insert(0, 'offline-a ');
    const pa = provider(a);
    const pb = provider(b);
    await Promise.all([whenSynced(pa), whenSynced(pb)]);
    // b may finish syncing before a's offline edit reached the relay: wait until b has it, so
    // the insert at 0 lands before it (concurrent inserts at one spot order by client id).
    await whenText(b, 'offline-a ');
    b.getText('t').insert(0, 'from-b ');
    const expected = 'from-b offline-a ';
    await Promise.all([whenText(a, expected), whenText(b, expected)]);
    expect(Y.encodeStateVector(a)).toEqual(Y.encodeStateVector(b));
  });

  it('a provider and a capsync protocol client converge, and the content is durable', async () => {
    const ydoc = new Y.Doc();
    const p = provider(ydoc, 'mixed');
    await whenSynced(p);
    const c = await ProtocolClient.synced(relay.docUrl('mixed'));
    ydoc.getText('t').insert(0, 'stock ');
    await c.waitForText('stock ');
    c.type('capsync');
    await whenText(ydoc, 'stock capsync');
    await c.waitForAck(c.seq);
    await c.close();
    p.destroy();
    // A new provider on a fresh doc loads everything back from the relay.
    const fresh = new Y.Doc();
    await whenSynced(provider(fresh, 'mixed'));
    await whenText(fresh, 'stock capsync');
  });

  it('awareness crosses between providers', async () => {
    const pa = provider(new Y.Doc(), 'presence');
    const pb = provider(new Y.Doc(), 'presence');
    await Promise.all([whenSynced(pa), whenSynced(pb)]);
    pa.awareness.setLocalStateField('user', { name: 'ann' });
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = () => {
          if (pb.awareness.getStates().get(pa.awareness.clientID)?.['user']?.name === 'ann') resolve();
        };
        pb.awareness.on('change', check);
        check();
      }),
      10_000,
      'awareness at b',
    );
  });
});
