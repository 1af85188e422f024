import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { CloseCode } from '@capsync/core';
import { startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { connectAs, updateOf } from '../support/client-ids.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';
import { mintToken } from '../support/tokens.js';
import { startMesh, whenMeshUp } from '../federation/mesh-fixture.js';

/**
 * issue 11, attack 6: client ids were trusted. A writer could send structs under another
 * writer's client id and next clock range while that writer was offline; both were acknowledged
 * and the two replicas stayed divergent forever with equal state vectors.
 */

const SECRET = 'adversarial-client-ids-secret-0123456789';

function token(sub: string): Promise<string> {
  return mintToken(SECRET, { sub, lifetimeS: 3600 });
}

describe('adversarial: client id forgery (issue 11, attack 6)', () => {
  it("issue-11 attack 6: bob writing under offline alice's client id and next clock range is refused 4403 not-owner; alice's own edits are acked and replicas converge, across tabs and a restart", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/shared`;
    // Alice's replica (her IndexedDB): it outlives her connections, and keeps her client id.
    const alice = new Y.Doc();
    const aliceId = alice.clientID;
    const tab1 = await connectAs(url, SECRET, 'alice');
    tab1.sendMessage({ type: 'update', update: updateOf(alice, () => alice.getText('t').insert(0, 'hello')) });
    await tab1.waitForAck(tab1.seq);
    await tab1.close();

    // Alice is offline. Bob forges an edit under her client id, at her next clock.
    // A bystander of another document (its token in the query: it has no headers option).
    const bystander = await startBystander(relay.url, `bystander?token=${await token('carol')}`);
    const bob = await connectAs(url, SECRET, 'bob');
    expect(bob.text).toBe('hello');
    const forger = new Y.Doc();
    Y.applyUpdate(forger, Y.encodeStateAsUpdate(bob.doc));
    // After the apply: Yjs picks a fresh client id when a remote update carries its own.
    forger.clientID = aliceId;
    const forged = updateOf(forger, () => forger.getText('t').insert(5, ' -999'));
    bob.sendMessage({ type: 'update', update: forged });
    const closed = await bob.waitClosed();
    expect(closed.code).toBe(CloseCode.Forbidden);
    expect(closed.reason).toMatch(/^not-owner: /);
    // The refusal names no one: bob learns nothing about who owns the id.
    expect(closed.reason).not.toContain('alice');
    expect(bob.ackedSeq).toBeLessThan(bob.seq);

    // Alice comes back in a second tab (same sub, new connection) and writes the same clocks.
    const tab2 = await connectAs(url, SECRET, 'alice');
    expect(tab2.text).toBe('hello');
    tab2.sendMessage({ type: 'update', update: updateOf(alice, () => alice.getText('t').insert(5, ' world')) });
    await tab2.waitForAck(tab2.seq);
    const rtts = await bystander.stop();
    console.log(`attack 6: bystander worst round trip ${worst(rtts).toFixed(0)} ms`);
    expect(worst(rtts)).toBeLessThan(1000);
    // Bob (reconnected as a reader) converges with alice: same content, same state vector.
    const bobAgain = await connectAs(url, SECRET, 'bob');
    expect(bobAgain.text).toBe('hello world');
    expect(Y.encodeStateVector(bobAgain.doc)).toEqual(Y.encodeStateVector(alice));
    await Promise.all([tab2.close(), bobAgain.close()]);

    // Ownership survives a restart (SIGKILL, same data directory).
    await killRelay(relay);
    const restarted = await spawnRelay(['--data', relay.dataDir, '--auth-secret', SECRET]);
    try {
      const url2 = `${restarted.url}/shared`;
      const bob2 = await connectAs(url2, SECRET, 'bob');
      const forger2 = new Y.Doc();
      Y.applyUpdate(forger2, Y.encodeStateAsUpdate(bob2.doc));
      forger2.clientID = aliceId;
      bob2.sendMessage({ type: 'update', update: updateOf(forger2, () => forger2.getText('t').insert(0, 'X')) });
      expect((await bob2.waitClosed()).code).toBe(CloseCode.Forbidden);
      const tab3 = await connectAs(url2, SECRET, 'alice');
      tab3.sendMessage({ type: 'update', update: updateOf(alice, () => alice.getText('t').insert(11, '!')) });
      await tab3.waitForAck(tab3.seq);
      // Bob still writes under his own client ids.
      const bob3 = await connectAs(url2, SECRET, 'bob');
      bob3.type(' (bob)');
      await bob3.waitForAck(bob3.seq);
      const reader = await connectAs(url2, SECRET, 'carol');
      expect(reader.text).toBe('hello world! (bob)');
      await Promise.all([tab3.close(), bob3.close(), reader.close()]);
    } finally {
      await killRelay(restarted);
    }
  });

  it('issue-11 attack 6: on a relay with auth, peer relays still replicate every identity\'s edits (they are trusted with client ids)', async () => {
    const mesh = await startMesh(2, { authSecret: SECRET, peerToken: undefined });
    try {
      await whenMeshUp(mesh.relays);
      const aliceOn0 = await connectAs(mesh.relays[0]!.docUrl('meshed'), SECRET, 'alice');
      aliceOn0.type('alice@0');
      await aliceOn0.waitForAck(aliceOn0.seq);
      const bobOn1 = await connectAs(mesh.relays[1]!.docUrl('meshed'), SECRET, 'bob');
      await bobOn1.waitForText('alice@0');
      bobOn1.type(' bob@1');
      await bobOn1.waitForAck(bobOn1.seq);
      await aliceOn0.waitForText('alice@0 bob@1');
      await Promise.all([aliceOn0.close(), bobOn1.close()]);
    } finally {
      await mesh.close();
    }
  });

  it("issue-11 attack 6 (review): content held back as pending claims no client id, so mallory cannot squat on alice's id before alice writes", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/squat`;
    const alice = await connectAs(url, SECRET, 'alice');
    const mallory = await connectAs(url, SECRET, 'mallory');
    // Mallory learned alice's client id (from her presence): one struct under it at a far clock,
    // which never integrates (clocks 0.. are missing), so it is never stored nor broadcast.
    const forger = new Y.Doc();
    forger.clientID = alice.doc.clientID;
    const whole = updateOf(forger, () => forger.getText('t').insert(0, 'x'.repeat(1000)));
    const farClock = new Y.Doc();
    farClock.clientID = alice.doc.clientID;
    updateOf(farClock, () => farClock.getText('t').insert(0, 'x'.repeat(999)));
    mallory.sendMessage({ type: 'update', update: Y.diffUpdate(whole, Y.encodeStateVector(farClock)) });
    mallory.sendMessage({ type: 'ping', id: 1 });
    await mallory.waitFor(() => mallory.received.some((m) => m.type === 'pong'), 'pong');
    // Alice's first edit under her own id is hers: acknowledged, not refused as another's.
    const seq = alice.type('hi');
    await alice.waitForAck(seq);
    expect(alice.closeInfo).toBeNull();
    await alice.close();
    await mallory.close();
  }, 30_000);

  it('issue-11 attack 6: an open relay has no identities, so no client id ownership (documented)', async () => {
    await using relay = await startAttackedRelay();
    const a = await ProtocolClient.synced(`${relay.url}/open`);
    a.type('a');
    await a.waitForAck(a.seq);
    const b = await ProtocolClient.synced(`${relay.url}/open`);
    const other = new Y.Doc();
    Y.applyUpdate(other, Y.encodeStateAsUpdate(b.doc));
    other.clientID = a.doc.clientID;
    b.sendMessage({ type: 'update', update: updateOf(other, () => other.getText('t').insert(1, 'b')) });
    await b.waitForAck(b.seq);
    await Promise.all([a.close(), b.close()]);
  });

  it("issue-11 attack 6: content under a squatted client id that the forgery checks also refuse is answered 4403 not-owner, not a retried 'corrupt update'", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/squatted`;
    // Alice's offline edit: a nested text in a map (X:0 the type, X:1.. its text).
    const alice = new Y.Doc();
    const x = alice.clientID;
    const nested = new Y.Text();
    const offline = updateOf(alice, () => {
      alice.getMap('m').set('cell', nested);
      nested.insert(0, 'revenue');
    });
    // Mallory (who saw X in alice's presence) writes one character under X first.
    const mallory = await connectAs(url, SECRET, 'mallory');
    const squatter = new Y.Doc();
    squatter.clientID = x;
    mallory.sendMessage({ type: 'update', update: updateOf(squatter, () => squatter.getText('t').insert(0, 'x')) });
    await mallory.waitForAck(mallory.seq);

    // Alice's X:1.. now name mallory's X:0 as their parent, which is no shared type: the forgery
    // checks fail it; the answer must still say whose id it is.
    const aliceConn = await connectAs(url, SECRET, 'alice');
    aliceConn.sendMessage({ type: 'update', update: offline });
    const closed = await aliceConn.waitClosed();
    expect(closed.code).toBe(CloseCode.Forbidden);
    expect(closed.reason).toMatch(/^not-owner: /);
    // Nothing of alice's content was applied; mallory's is intact.
    const reader = await connectAs(url, SECRET, 'reader');
    expect(reader.text).toBe('x');
    expect(reader.doc.getMap('m').size).toBe(0);
    await Promise.all([mallory.close(), reader.close()]);
  });

  it("issue-11 attack 6 (review): mallory wrote at least as many structs under alice's id as alice typed offline; alice's edit is refused 4403, not acked and dropped, while resends and full-state POSTs of stored content stay fine", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/covered`;
    const alice = new Y.Doc();
    const x = alice.clientID;
    const offline = updateOf(alice, () => alice.getText('t').insert(0, 'hello'));
    // Mallory's ten characters cover the clocks of alice's five.
    const mallory = await connectAs(url, SECRET, 'mallory');
    const squatter = new Y.Doc();
    squatter.clientID = x;
    const squatted = updateOf(squatter, () => squatter.getText('t').insert(0, '0123456789'));
    mallory.sendMessage({ type: 'update', update: squatted });
    await mallory.waitForAck(mallory.seq);

    // Before: the relay held X up to clock 10, skipped alice's X:0-4 as known, and acked it.
    const aliceConn = await connectAs(url, SECRET, 'alice');
    aliceConn.sendMessage({ type: 'update', update: offline });
    const closed = await aliceConn.waitClosed();
    expect(closed.code).toBe(CloseCode.Forbidden);
    expect(closed.reason).toMatch(/^not-owner: /);

    // The same bytes as stored are fine from anyone: mallory's own resend, and bob posting the
    // whole stored state back (read it, edit, post everything: a common backend pattern).
    mallory.sendMessage({ type: 'update', update: squatted });
    await mallory.waitForAck(mallory.seq);
    const auth = { authorization: `Bearer ${await token('bob')}` };
    const state = new Uint8Array(await (await fetch(`${relay.httpUrl}/v1/docs/covered/update`, { headers: auth })).arrayBuffer());
    const bobDoc = new Y.Doc();
    Y.applyUpdate(bobDoc, state);
    bobDoc.getText('t').insert(10, '!');
    const posted = await fetch(`${relay.httpUrl}/v1/docs/covered/update`, { method: 'POST', headers: auth, body: Buffer.from(Y.encodeStateAsUpdate(bobDoc)) });
    expect(posted.status).toBe(200);
    const reader = await connectAs(url, SECRET, 'reader');
    expect(reader.text).toBe('0123456789!');
    await Promise.all([mallory.close(), reader.close()]);
  });

  it("issue-11 attack 6 (review 2): a client carrying another user's edits the relay lacks (failover, relay crash) does not get them claimed: they are accepted unclaimed and their author keeps writing under her id", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/carried`;
    // Alice's edit reached bob (through another relay, or a broadcast before a crash) but not this relay.
    const alice = new Y.Doc();
    const first = updateOf(alice, () => alice.getText('t').insert(0, 'hello'));
    const bobDoc = new Y.Doc();
    Y.applyUpdate(bobDoc, first);
    const bobOwn = updateOf(bobDoc, () => bobDoc.getText('t').insert(5, '!'));
    // Bob's capsync client declares the id it writes under; his update carries alice's content too.
    const bob = await connectAs(url, SECRET, 'bob', { capabilities: [`writes:${bobDoc.clientID}`] });
    bob.sendMessage({ type: 'update', update: Y.mergeUpdates([first, bobOwn]) });
    await bob.waitForAck(bob.seq);

    // Alice's resend is what the relay holds; her next edit under her id is hers (before: 4403, bob owned it).
    const aliceConn = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${alice.clientID}`] });
    aliceConn.sendMessage({ type: 'update', update: first });
    aliceConn.sendMessage({ type: 'update', update: updateOf(alice, () => alice.getText('t').insert(0, '> ')) });
    await aliceConn.waitForAck(aliceConn.seq);
    expect(aliceConn.closeInfo).toBeNull();
    // And bob cannot write under alice's id now that she claimed it.
    const forger = new Y.Doc();
    Y.applyUpdate(forger, Y.encodeStateAsUpdate(aliceConn.doc));
    forger.clientID = alice.clientID;
    bob.sendMessage({ type: 'update', update: updateOf(forger, () => forger.getText('t').insert(0, 'x')) });
    const closed = await bob.waitClosed();
    expect(closed.code).toBe(CloseCode.Forbidden);
    const reader = await connectAs(url, SECRET, 'reader');
    expect(reader.text).toBe('> hello!');
    await Promise.all([aliceConn.close(), reader.close()]);
  });

  it("issue-11 attack 6 (review 2): mallory writing under a newcomer's client id, seen in her presence before her first edit, is refused 4403: the id was held for her since her hello declared it", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/newcomer`;
    // Alice joins (her capsync client declares its id in the hello) and shows her presence; she has not typed yet.
    const alice = new Y.Doc();
    const aliceConn = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${alice.clientID}`] });
    // Mallory, who saw that id in alice's presence, writes under it first.
    const mallory = await connectAs(url, SECRET, 'mallory');
    const squatter = new Y.Doc();
    squatter.clientID = alice.clientID;
    mallory.sendMessage({ type: 'update', update: updateOf(squatter, () => squatter.getText('t').insert(0, 'x')) });
    const closed = await mallory.waitClosed();
    expect(closed.code).toBe(CloseCode.Forbidden);
    expect(closed.reason).toMatch(/^not-owner: /);
    // Alice's first edit is hers.
    aliceConn.sendMessage({ type: 'update', update: updateOf(alice, () => alice.getText('t').insert(0, 'hi')) });
    await aliceConn.waitForAck(aliceConn.seq);
    const reader = await connectAs(url, SECRET, 'reader');
    expect(reader.text).toBe('hi');
    await Promise.all([aliceConn.close(), reader.close()]);
  });
});
