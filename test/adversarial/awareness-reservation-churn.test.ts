import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { startAttackedRelay } from '../support/attack.js';
import { awarenessStatesSeen, ProtocolClient, type ProtocolClientOptions } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'adversarial-awareness-hijack-secret-0123';
const as = async (sub: string): Promise<ProtocolClientOptions> => ({ headers: { authorization: `Bearer ${await mintToken(SECRET, { sub })}` } });

describe('adversarial: awareness reservations cannot be flushed (issue 11, second review)', () => {
  it("issue-11 review 2 (awareness hijack): mallory setting and removing 1,008 presence ids (16 at a time) does not push alice's reservation out; alice's id stays hers during the blip", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/presence`;
    const watcher = await ProtocolClient.synced(url, await as('walter'));
    const mallory = await ProtocolClient.synced(url, await as('mallory'));
    const aliceDoc = new Y.Doc();
    const aw = new awarenessProtocol.Awareness(aliceDoc);
    const id = aliceDoc.clientID;
    aw.setLocalState({ user: 'alice', cursor: 1 });
    const a1 = await ProtocolClient.synced(url, await as('alice'));
    a1.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(aw, [id]) });
    await watcher.waitFor(() => awarenessStatesSeen(watcher).has(id) || undefined, 'alice visible');
    a1.ws.terminate();
    await watcher.waitFor(() => !awarenessStatesSeen(watcher).has(id) || undefined, 'alice removed');

    const started = performance.now();
    for (let round = 0; round < 63; round++) {
      const fakes = Array.from({ length: 16 }, (_, i) => {
        const d = new Y.Doc();
        d.clientID = 10_000_000 + round * 16 + i;
        const a = new awarenessProtocol.Awareness(d);
        a.setLocalState({ x: 1 });
        return a;
      });
      for (const a of fakes) mallory.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(a, [a.clientID]) });
      for (const a of fakes) {
        a.setLocalState(null);
        mallory.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(a, [a.clientID]) });
        a.destroy();
      }
    }
    const fake = new Y.Doc();
    fake.clientID = id;
    const faw = new awarenessProtocol.Awareness(fake);
    for (let i = 0; i < 50; i++) faw.setLocalState({ user: 'alice', note: 'mallory speaking', i });
    mallory.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(faw, [id]) });
    const hijacked = await watcher
      .waitFor(() => awarenessStatesSeen(watcher).get(id)?.['note'] === 'mallory speaking' || undefined, 'mallory as alice', 5_000)
      .then(() => true, () => false);
    console.log(`churn: ${Math.round(performance.now() - started)} ms of churn; mallory shown as alice: ${hijacked}; mallory closed: ${JSON.stringify(mallory.closeInfo)}`);
    expect(hijacked).toBe(false);
    await Promise.all([watcher.close(), mallory.close()]);
  }, 60_000);
});
