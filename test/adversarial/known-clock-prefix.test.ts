import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { startAttackedRelay } from '../support/attack.js';
import { connectAs, updateOf } from '../support/client-ids.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';

/**
 * Third review of issue 11 (24e1ae9, 0009609): the known-clock comparison (matchesStored in
 * packages/server/src/relay/known-structs.ts) compares an incoming struct only with the ONE
 * stored item its first clock falls in (`Math.min(s.length, stored.length - offset)` units).
 * A squatter who wrote under a victim's client id first (the README's known window: an id
 * declared before a relay restart and not yet written) splits her clocks into a short item that
 * equals the start of the victim's edit and a different item after it. The victim's longer
 * struct then "matches", is skipped by Yjs as known, and is acknowledged: the rest of her edit
 * is lost, and both replicas keep equal state vectors for good. The README promises a
 * different struct at a known id and clock is refused 4403 "instead of being skipped as known
 * and lost".
 */

const SECRET = 'adversarial-rev3-known-clock-prefix-secret-0123456789';

describe('adversarial: a struct under a squatted id spanning several stored items', () => {
  it("issue-11 attack 6 (third review, known-clock prefix): a victim's struct spanning several of a squatter's stored items at her id is refused 4403, never acknowledged and lost", async () => {
    const relay = await startAttackedRelay(['--auth-secret', SECRET]);
    let restarted: Awaited<ReturnType<typeof spawnRelay>> | null = null;
    try {
      const V = 555_000_333;
      // Alice opens the (empty) document with a fresh id V, declared; her presence shows V. She
      // has not written yet when the relay restarts (the declaration was held in memory only).
      const before = await connectAs(`${relay.url}/prefix`, SECRET, 'alice', { capabilities: [`writes:${V}`] });
      await before.close();
      await killRelay(relay);
      restarted = await spawnRelay(['--data', relay.dataDir, '--auth-secret', SECRET]);
      const url = `${restarted.url}/prefix`;

      // Mallory reaches the restarted relay first and writes under V: "a" at V:0 exactly as
      // alice's first keystroke would be, then "XY" at V:1..2 in front of it (another item).
      const mallory = await connectAs(url, SECRET, 'mallory');
      const forger = new Y.Doc();
      forger.clientID = V;
      const squat = updateOf(forger, () => {
        forger.transact(() => {
          forger.getText('t').insert(0, 'a');
          forger.getText('t').insert(0, 'XY');
        });
      });
      mallory.sendMessage({ type: 'update', update: squat });
      await mallory.waitForAck(mallory.seq);

      // Alice's offline replica typed "abc" (V:0..2, one struct) and reconnects.
      const alice = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${V}`] });
      const hers = new Y.Doc();
      hers.clientID = V;
      const edit = updateOf(hers, () => hers.getText('t').insert(0, 'abc'));
      alice.sendMessage({ type: 'update', update: edit });
      const seq = alice.seq;
      const result = await alice.ackedOrClosed(seq);
      const check = await connectAs(url, SECRET, 'carol');
      console.log(`alice's "abc" under V: ${result}; the relay holds "${check.doc.getText('t').toString()}"; alice's replica holds "${hers.getText('t').toString()}"`);
      // Either refused as not hers, or stored: never acknowledged and dropped.
      if (result === 'acked') expect(check.doc.getText('t').toString()).toContain('abc');
      else expect(result).toMatch(/^closed 4403 not-owner/);
      await check.close();
    } finally {
      if (restarted) await killRelay(restarted);
      await relay[Symbol.asyncDispose]();
    }
  }, 60_000);
});
