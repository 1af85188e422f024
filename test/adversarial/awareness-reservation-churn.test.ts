import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { startAttackedRelay } from '../support/attack.js';
import { awarenessStatesSeen, ProtocolClient, type ProtocolClientOptions } from '../support/protocol-client.js';
import { metricValue } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'adversarial-awareness-hijack-secret-0123';
const as = async (sub: string): Promise<ProtocolClientOptions> => ({ headers: { authorization: `Bearer ${await mintToken(SECRET, { sub })}` } });

const ownerKey = () => `owner:${randomBytes(24).toString('base64url')}`;

function presence(id: number, state: Record<string, unknown>, times = 1): Uint8Array {
  const d = new Y.Doc();
  d.clientID = id;
  const a = new awarenessProtocol.Awareness(d);
  for (let i = 0; i < times; i++) a.setLocalState({ ...state, i });
  const u = awarenessProtocol.encodeAwarenessUpdate(a, [id]);
  a.destroy();
  return u;
}

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

  it("issue-11 review 3 (awareness reservations flushed with made-up owner keys): 63 fresh owner keys from one address × 16 dropped presence ids do not push alice's reservation out; her id stays hers during a blip", async () => {
    await using relay = await startAttackedRelay([]);
    const url = `${relay.url}/presence`;
    const watcher = await ProtocolClient.synced(url);
    const id = 31_337_001;
    const a1 = await ProtocolClient.synced(url, { capabilities: [ownerKey()] });
    a1.sendMessage({ type: 'awareness', update: presence(id, { user: 'alice' }) });
    await watcher.waitFor(() => awarenessStatesSeen(watcher).has(id) || undefined, 'alice visible');
    a1.ws.terminate(); // a blip: reserved for alice's owner key
    await watcher.waitFor(() => !awarenessStatesSeen(watcher).has(id) || undefined, 'alice removed');

    const started = performance.now();
    for (let round = 0; round < 63; round++) {
      const m = await ProtocolClient.synced(url, { capabilities: [ownerKey()] });
      for (let i = 0; i < 16; i++) m.sendMessage({ type: 'awareness', update: presence(20_000_000 + round * 16 + i, { x: 1 }) });
      m.sendMessage({ type: 'ping', id: 1 });
      await m.waitFor(() => m.received.some((x) => x.type === 'pong') || undefined, 'pong');
      m.ws.terminate();
      await m.waitClosed();
    }
    const churnMs = performance.now() - started;
    const mallory = await ProtocolClient.synced(url, { capabilities: [ownerKey()] });
    mallory.sendMessage({ type: 'awareness', update: presence(id, { user: 'alice', note: 'mallory speaking' }, 50) });
    const hijacked = await watcher
      .waitFor(() => awarenessStatesSeen(watcher).get(id)?.['note'] === 'mallory speaking' || undefined, 'mallory as alice', 5_000)
      .then(() => true, () => false);
    console.log(`${Math.round(churnMs)} ms of churn over 63 owner keys; mallory shown under alice's id: ${hijacked}`);
    expect(hijacked).toBe(false);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-awareness-reservations-per-address' })).toBeGreaterThan(0);
    await Promise.all([watcher.close(), mallory.close()]);
  }, 60_000);
});
