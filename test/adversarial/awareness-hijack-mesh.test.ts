import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { startAttackedMesh } from '../support/attack-mesh.js';
import { awarenessStatesSeen, ProtocolClient, type ProtocolClientOptions } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'adversarial-awareness-hijack-secret-0123';
const as = async (sub: string): Promise<ProtocolClientOptions> => ({ headers: { authorization: `Bearer ${await mintToken(SECRET, { sub })}` } });

describe('adversarial: awareness reservations across a mesh (issue 11, second review)', () => {
  it("issue-11 review 2 (awareness hijack): mallory cannot take alice's reserved presence id through another relay of the mesh; alice's reconnect gets it back", async () => {
    await using mesh = await startAttackedMesh(2, ['--auth-secret', SECRET, '--peer-mode', 'replicate-all']);
    const [r0, r1] = mesh.relays as [(typeof mesh.relays)[0], (typeof mesh.relays)[0]];
    const watcher = await ProtocolClient.synced(`${r0.url}/presence`, await as('walter'));
    const mallory = await ProtocolClient.synced(`${r1.url}/presence`, await as('mallory'));
    const aliceDoc = new Y.Doc();
    const aw = new awarenessProtocol.Awareness(aliceDoc);
    const id = aliceDoc.clientID;
    aw.setLocalState({ user: 'alice', cursor: 1 });
    const a1 = await ProtocolClient.synced(`${r0.url}/presence`, await as('alice'));
    a1.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(aw, [id]) });
    await watcher.waitFor(() => awarenessStatesSeen(watcher).has(id) || undefined, 'alice visible');
    await mallory.waitFor(() => awarenessStatesSeen(mallory).has(id) || undefined, 'alice visible on relay 1');
    a1.ws.terminate(); // a blip: relay 0 reserves the id for alice
    await mallory.waitFor(() => !awarenessStatesSeen(mallory).has(id) || undefined, 'alice removed on relay 1');

    const fake = new Y.Doc();
    fake.clientID = id;
    const faw = new awarenessProtocol.Awareness(fake);
    for (let i = 0; i < 50; i++) faw.setLocalState({ user: 'alice', cursor: 999, note: 'mallory speaking', i });
    mallory.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(faw, [id]) });
    const hijacked = await watcher
      .waitFor(() => awarenessStatesSeen(watcher).get(id)?.['note'] === 'mallory speaking' || undefined, 'mallory as alice on relay 0', 5_000)
      .then(() => true, () => false);

    const a2 = await ProtocolClient.synced(`${r0.url}/presence`, await as('alice'));
    aw.setLocalState({ user: 'alice', cursor: 2 });
    a2.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(aw, [id]) });
    const back = await watcher
      .waitFor(() => awarenessStatesSeen(watcher).get(id)?.['cursor'] === 2 || undefined, "alice's presence after her reconnect", 5_000)
      .then(() => true, () => false);
    console.log(`mesh presence hijack: watcher on relay 0 saw mallory as alice: ${hijacked}; alice's own presence back after reconnect: ${back}; shown now:`, awarenessStatesSeen(watcher).get(id));
    expect(hijacked).toBe(false);
    expect(back).toBe(true);
    await Promise.all([watcher.close(), mallory.close(), a2.close()]);
  }, 60_000);
});
