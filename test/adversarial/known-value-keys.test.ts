import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { connectAs } from '../support/client-ids.js';
import { mintToken } from '../support/tokens.js';

/**
 * Fourth review of issue 11: the known-clock comparison (known-structs.ts sameValue) claims to
 * cost "at most what `a` (the sender's value) holds", but its key-count check runs `for (key in
 * q)` over the STORED object: V8 collects every enumerable key of q before the first
 * iteration, so comparing a one-key object with a stored object of K keys costs O(K) (136 ms
 * for K = 200,000 measured in plain node). A writer POSTs a 26-byte update holding one map
 * entry `{k0: 0}` at the known clock of someone's big stored JSON value: refused 403, after
 * the relay spent time proportional to the stored value, once per request. Cost per update
 * grows with the document, not the update (issue 11's point 3).
 */

const SECRET = 'adversarial-rev4-known-value-keys-0123456789';
const KEYS = heavy ? 1_000_000 : 500_000;
const PROBES = heavy ? 100 : 20;

function probe(client: number, value: Record<string, number>): Uint8Array {
  const d = new Y.Doc();
  d.clientID = client;
  d.getMap('m').set('blob', value);
  return Y.encodeStateAsUpdate(d);
}

describe('adversarial (issue 11, fourth review): tiny updates compared against a huge stored value', () => {
  it("issue-11 attack 3 (fourth review, known value keys): 26-byte POSTs at the known clock of a 500,000-key stored object cost the relay what the update holds, not what the stored value holds", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/known-value-keys`;
    // Alice stores one big JSON object (a config blob, an import) under her id.
    const alice = await connectAs(url, SECRET, 'alice');
    const big: Record<string, number> = {};
    for (let i = 0; i < KEYS; i++) big[`k${i}`] = i;
    alice.doc.getMap('m').set('blob', big);
    await alice.waitForAck(alice.seq, 60_000);
    const aliceId = alice.doc.clientID;

    const token = await mintToken(SECRET, { sub: 'mallory', lifetimeS: 3600 });
    const post = (body: Uint8Array) =>
      fetch(`${relay.httpUrl}/v1/docs/known-value-keys/update`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body: Buffer.from(body) }).then((r) => r.status);

    // Baseline: the same number of POSTs of a same-sized probe refused on its place (another map key).
    const cheap = (() => {
      const d = new Y.Doc();
      d.clientID = aliceId;
      d.getMap('m').set('bloc', { k0: 0 });
      return Y.encodeStateAsUpdate(d);
    })();
    for (let i = 0; i < 3; i++) expect(await post(cheap)).toBe(403); // warm-up

    const tiny = probe(aliceId, { k0: 0 });
    const bystanderToken = await mintToken(SECRET, { sub: 'bystander', lifetimeS: 3600 });
    const bystander = await startBystander(relay.url, 'bystander', 30_000, { headers: { authorization: `Bearer ${bystanderToken}` } });
    // Interleaved, one of each per round, compared by median: a timing of 20 POSTs in a row
    // varied 2x from run to run on this shared machine (a baseline of 90 ms once made 309 ms
    // look like an attack). Before the fix a probe cost what the stored value holds (~300 ms
    // each at 500,000 keys), far past any noise.
    const baseline: number[] = [];
    const attack: number[] = [];
    const statuses: number[] = [];
    for (let i = 0; i < PROBES; i++) {
      let started = performance.now();
      expect(await post(cheap)).toBe(403);
      baseline.push(performance.now() - started);
      started = performance.now();
      statuses.push(await post(tiny));
      attack.push(performance.now() - started);
    }
    const rtts = await bystander.stop();
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(`${PROBES} POSTs of ${tiny.byteLength} bytes vs a ${KEYS}-key stored object: median ${median(attack).toFixed(1)} ms (statuses ${[...new Set(statuses)]}); refused on place: median ${median(baseline).toFixed(1)} ms; bystander worst round trip ${worst(rtts).toFixed(0)} ms`);
    expect(statuses.every((s) => s === 403)).toBe(true);
    // Bounded by the update: within a few times the place-refused baseline (+ noise).
    expect(median(attack)).toBeLessThan(median(baseline) * 2 + 20);

    const check = await connectAs(url, SECRET, 'carol');
    expect(Object.keys(check.doc.getMap('m').get('blob') as object)).toHaveLength(KEYS);
    await Promise.all([check.close(), alice.close()]);
  }, 120_000);
});
