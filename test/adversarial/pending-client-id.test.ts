import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { CloseCode } from '@capsync/core';
import { startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { connectAs, replicaAs, updateOf } from '../support/client-ids.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';

/**
 * issue 11, hostile review: pending content under another user's (not yet owned) client id
 * could integrate later. Bob sends structs under alice's next session's client id X at a clock
 * past its start, so they wait for a dependency; alice then writes under X (claiming it), which
 * is that dependency: bob's structs integrated under alice's id and bob was acknowledged.
 *
 * Third review (finding 3): the same, with bob declaring `writes:<his own id>`. Content under
 * ids a writer did not declare was left out of the ids waiting content is evicted by (and
 * checked by when it integrates late), so it integrated under alice's id again. Now every id
 * nobody owns that an update inserts under is in that list; only declared ones are claimed.
 */

const SECRET = 'adversarial-pending-client-ids-secret-0123456789';

describe("adversarial: pending content under another user's client id (issue 11 review)", () => {
  it("issue-11 review (pending client ids): bob's structs waiting under a client id alice then claims are refused 4403 not-owner and never integrate; alice is acked; her own out-of-order tabs still integrate", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/pending`;
    const seed = await connectAs(url, SECRET, 'carol');
    seed.type('seed:');
    await seed.waitForAck(seed.seq);
    await seed.close();

    // Bob learned X, the client id of alice's next session (awareness shows it). He builds X's
    // first five clocks locally and sends only what follows: it waits for X:0..4.
    const X = 987_654_321;
    const bob = await connectAs(url, SECRET, 'bob');
    const forger = replicaAs(bob, X);
    forger.getText('t').insert(5, 'AAAAA'); // X:0..4, never sent
    const forged = updateOf(forger, () => forger.getText('t').insert(10, ' -999')); // X:5..9
    bob.sendMessage({ type: 'update', update: forged });
    const forgedSeq = bob.seq;
    const bystander = await startBystander(relay.url, `bystander?token=${await mintToken(SECRET, { sub: 'dave', lifetimeS: 3600 })}`);

    // Alice's session X writes its first five clocks: exactly what bob's structs wait for.
    const alice = await connectAs(url, SECRET, 'alice');
    const hers = replicaAs(alice, X);
    alice.sendMessage({ type: 'update', update: updateOf(hers, () => hers.getText('t').insert(5, 'hello')) });
    await alice.waitForAck(alice.seq);
    const closed = await bob.waitClosed();
    const rtts = await bystander.stop();
    console.log(`bob's pending update under X: closed ${closed.code} ${closed.reason}; bystander worst RTT ${worst(rtts).toFixed(0)} ms`);
    expect(closed.code).toBe(CloseCode.Forbidden);
    expect(closed.reason).toMatch(/^not-owner/);
    expect(bob.received.some((m) => m.type === 'ack' && m.seq >= forgedSeq)).toBe(false);

    // Alice keeps writing under X; nobody ever sees bob's content.
    alice.sendMessage({ type: 'update', update: updateOf(hers, () => hers.getText('t').insert(10, '!')) });
    await alice.waitForAck(alice.seq);
    await alice.close();
    const check = await connectAs(url, SECRET, 'carol');
    expect(check.text).toBe('seed:hello!');
    await check.close();

    // Her own tabs out of order (same identity): the second tab's content waits for the first
    // tab's, then both are acked.
    const Y1 = 123_456_789;
    const tab2 = await connectAs(url, SECRET, 'alice');
    const t2 = replicaAs(tab2, Y1);
    t2.getText('t').insert(0, 'A'); // Y1:0, sent by tab 1 below
    const first = Y.encodeStateAsUpdate(t2);
    const second = updateOf(t2, () => t2.getText('t').insert(1, 'B')); // Y1:1, waits for Y1:0
    tab2.sendMessage({ type: 'update', update: second });
    const tab1 = await connectAs(url, SECRET, 'alice');
    tab1.sendMessage({ type: 'update', update: first });
    await tab1.waitForAck(tab1.seq);
    await tab2.waitForAck(tab2.seq);
    await Promise.all([tab1.close(), tab2.close()]);
    const final = await connectAs(url, SECRET, 'carol');
    expect(final.text).toBe('ABseed:hello!');
    await final.close();
  }, 60_000);

  it("issue-11 rev3 attack 3 (undeclared pending): bob's waiting structs under alice's id, sent while bob declares writes:<his own id>, are refused 4403 and never integrate once alice claims it", async () => {
    const relay = await startAttackedRelay(['--auth-secret', SECRET]);
    let restarted: Awaited<ReturnType<typeof spawnRelay>> | null = null;
    try {
      const seed = await connectAs(`${relay.url}/undeclared-pending`, SECRET, 'carol');
      seed.type('seed:');
      await seed.waitForAck(seed.seq);
      await seed.close();
      const X = 987_650_001;
      // Alice's session X opened (declared X; her presence showed X), then the relay restarted:
      // the README's squat window (held ids are in memory only), where a squatter may get a
      // not-owner refusal in, never a forgery.
      const first = await connectAs(`${relay.url}/undeclared-pending`, SECRET, 'alice', { capabilities: [`writes:${X}`] });
      await first.close();
      await killRelay(relay);
      restarted = await spawnRelay(['--data', relay.dataDir, '--auth-secret', SECRET]);
      const url = `${restarted.url}/undeclared-pending`;

      const bob = await connectAs(url, SECRET, 'bob', { capabilities: ['writes:1234'] });
      const forger = replicaAs(bob, X);
      forger.getText('t').insert(5, 'AAAAA'); // X:0..4, never sent
      const forged = updateOf(forger, () => forger.getText('t').insert(10, ' -999')); // X:5..9
      bob.sendMessage({ type: 'update', update: forged });
      const forgedSeq = bob.seq;

      const alice = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${X}`] });
      const hers = replicaAs(alice, X);
      alice.sendMessage({ type: 'update', update: updateOf(hers, () => hers.getText('t').insert(5, 'hello')) });
      await alice.waitForAck(alice.seq);
      const bobResult = await bob.ackedOrClosed(forgedSeq, 5_000);
      const check = await connectAs(url, SECRET, 'carol');
      console.log(`bob's waiting update under alice's id X: ${bobResult}; the document reads "${check.text}"`);
      expect(check.text).toBe('seed:hello');
      expect(bobResult).toMatch(/^closed 4403/);
      await Promise.all([check.close(), alice.close()]);
    } finally {
      if (restarted) await killRelay(restarted);
      await relay[Symbol.asyncDispose]();
    }
  }, 60_000);
});
