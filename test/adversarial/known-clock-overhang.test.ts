import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { startAttackedRelay } from '../support/attack.js';
import { connectAs, updateOf } from '../support/client-ids.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';

/**
 * Third review of issue 11: the known-clock comparison runs only for client ids whose structs
 * in the update END at or before the relay's state (update-admission.ts, `end <= getState`).
 * A struct that starts at known clocks and runs past them goes down the "new content" path
 * uncompared, and Yjs integrates only its tail. Mallory (declaring his own id, so his content
 * is accepted unclaimed, 3a58081) writes "XYZ" under alice's still-unwritten id V in the
 * README's squat window (declared before a relay restart). Alice's offline "abcdef" (V:0..5)
 * is acknowledged, the relay keeps "XYZdef", her "abc" is lost, and V, with mallory's text,
 * is now claimed as hers. The README promises a refusal (4403 not-owner), never a silent loss.
 */

const SECRET = 'adversarial-rev3-known-clock-overhang-secret-0123456789';

describe('adversarial: a struct under a squatted id that starts at known clocks and runs past them', () => {
  it("issue-11 attack 6 (third review, known-clock overhang): alice's struct starting at clocks a squatter holds and running past them is refused 4403 or stored, never acked with its known part lost", async () => {
    const relay = await startAttackedRelay(['--auth-secret', SECRET]);
    let restarted: Awaited<ReturnType<typeof spawnRelay>> | null = null;
    try {
      const V = 555_000_444;
      const before = await connectAs(`${relay.url}/overhang`, SECRET, 'alice', { capabilities: [`writes:${V}`] });
      await before.close();
      await killRelay(relay);
      restarted = await spawnRelay(['--data', relay.dataDir, '--auth-secret', SECRET]);
      const url = `${restarted.url}/overhang`;

      const mallory = await connectAs(url, SECRET, 'mallory', { capabilities: ['writes:1'] });
      const forger = new Y.Doc();
      forger.clientID = V;
      mallory.sendMessage({ type: 'update', update: updateOf(forger, () => forger.getText('t').insert(0, 'XYZ')) });
      await mallory.waitForAck(mallory.seq);

      const alice = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${V}`] });
      const hers = new Y.Doc();
      hers.clientID = V;
      alice.sendMessage({ type: 'update', update: updateOf(hers, () => hers.getText('t').insert(0, 'abcdef')) });
      const seq = alice.seq;
      const result = await alice.ackedOrClosed(seq);
      const check = await connectAs(url, SECRET, 'carol');
      const stored = check.doc.getText('t').toString();
      console.log(`alice's "abcdef" under V: ${result}; the relay holds "${stored}"`);
      if (result === 'acked') expect(stored).toContain('abcdef');
      else expect(result).toMatch(/^closed 4403 not-owner/);
      await check.close();
    } finally {
      if (restarted) await killRelay(restarted);
      await relay[Symbol.asyncDispose]();
    }
  }, 60_000);
});
