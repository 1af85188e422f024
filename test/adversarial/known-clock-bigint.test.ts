import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { startAttackedRelay } from '../support/attack.js';
import { connectAs, updateOf } from '../support/client-ids.js';
import { mintToken } from '../support/tokens.js';

/**
 * Third review of issue 11 (0009609): the known-clock comparison compares JSON values with
 * JSON.stringify (known-structs.ts sameContent), which throws a TypeError on a BigInt, a value
 * Yjs stores (lib0 encodes bigint). So once any user stored a bigint, every other user's
 * update re-sending that struct (the README's "a full-state POST of stored content passes",
 * or any replica that carries her content) makes the relay throw: an HTTP 500 / a WebSocket
 * close 1011 internal, logged as a relay error, retried forever by the client. A false refusal
 * of honest clients, triggered by ordinary data.
 */

const SECRET = 'adversarial-rev3-known-clock-bigint-secret-0123456789';

describe('adversarial: known-clock comparison of bigint values', () => {
  it("issue-11 attack 6 (third review, known-clock bigint): a full-state POST carrying another user's stored bigint value is accepted (not a 500)", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/bigint`;
    const alice = new Y.Doc();
    const a = await connectAs(url, SECRET, 'alice');
    a.sendMessage({ type: 'update', update: updateOf(alice, () => alice.getMap('m').set('count', 5n)) });
    await a.waitForAck(a.seq);

    const auth = { authorization: `Bearer ${await mintToken(SECRET, { sub: 'bob', lifetimeS: 3600 })}` };
    const state = new Uint8Array(await (await fetch(`${relay.httpUrl}/v1/docs/bigint/update`, { headers: auth })).arrayBuffer());
    const bobDoc = new Y.Doc();
    Y.applyUpdate(bobDoc, state);
    bobDoc.getMap('m').set('note', 'bob was here');
    const posted = await fetch(`${relay.httpUrl}/v1/docs/bigint/update`, { method: 'POST', headers: auth, body: Buffer.from(Y.encodeStateAsUpdate(bobDoc)) });
    const body = await posted.text();
    console.log(`bob's full-state POST: ${posted.status} ${body}`);

    // The same over WebSocket: bob's replica re-sends alice's struct with his edit.
    const b = await connectAs(url, SECRET, 'bob');
    const bobUpdate = Y.encodeStateAsUpdate(bobDoc);
    bobDoc.getMap('m').set('note2', 'again');
    b.sendMessage({ type: 'update', update: Y.mergeUpdates([bobUpdate, Y.encodeStateAsUpdate(bobDoc)]) });
    const ws = await b.ackedOrClosed(b.seq);
    console.log(`bob's WebSocket update carrying alice's bigint struct: ${ws}`);
    expect(posted.status).toBe(200);
    expect(ws).toBe('acked');
    await a.close();
  });
});
