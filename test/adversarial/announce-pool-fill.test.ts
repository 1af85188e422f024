import { describe, expect, it } from 'vitest';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { connectAs, replicaAs, updateOf } from '../support/client-ids.js';
import type { ProtocolClient } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';

/**
 * Fourth review of issue 11: the per-document pool of held (declared, not yet written) client
 * ids is 10,000 and, once full, new declarations are not held at all. Held ids are never let go
 * when their connection closes (only on a write or a document unload), and each identity may
 * hold --max-clients-per-identity (1,000 by default). So 10 writer accounts (or one, where the
 * operator raised the per-identity cap to 10,000) fill the pool with 630 short connections
 * (16 ids per hello), keep one connection open so the document stays loaded, and from then
 * on no newcomer's declared id is held: the squatter who sees her id in her presence writes one
 * struct under it first, owns it, and her first edit is refused 4403 not-owner (rev1 squat back).
 * Now a connection's held ids are let go when it leaves the document (kept for its identity a
 * short grace period, at most 16 per identity), and there is no document pool to fill.
 */

const SECRET = 'adversarial-rev4-announce-pool-fill-0123456789';

async function firstEdit(alice: ProtocolClient, V: number, at: number): Promise<string> {
  const hers = replicaAs(alice, V);
  alice.sendMessage({ type: 'update', update: updateOf(hers, () => hers.getText('t').insert(at, 'hello')) });
  const seq = alice.seq;
  return alice.ackedOrClosed(seq);
}

describe('adversarial (rev4): filling the held-id pool', () => {
  it("issue-11 rev4 attack (announce pool fill): 10 writer accounts' hellos on closed connections fill the 10,000 held ids; a newcomer's declared id is still held and her first edit acknowledged", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/announce-pool`;
    const seed = await connectAs(url, SECRET, 'carol');
    seed.type('seed:');
    await seed.waitForAck(seed.seq);
    const bystander = await startBystander(relay.url, 'bystander', 10_000, { headers: { authorization: `Bearer ${await mintToken(SECRET, { sub: 'dave' })}` } });
    const rssBefore = await relay.rss();

    const started = performance.now();
    let next = 500_000_000;
    // 10 identities x 63 connections x 16 ids = 10,080 declarations, 1,000 held per identity.
    for (let round = 0; round < (heavy ? 630 : 63); round++) {
      const conns = await Promise.all(
        Array.from({ length: 10 }, (_, m) => connectAs(url, SECRET, `mallory-${m}`, { capabilities: Array.from({ length: 16 }, () => `writes:${next++}`) })),
      );
      await Promise.all(conns.map((c) => c.close()));
    }
    const rtts = await bystander.stop();
    const growth = (await relay.rss()) - rssBefore;
    console.log(`${heavy ? 6300 : 630} hellos on closed connections: ${(performance.now() - started).toFixed(0)} ms; relay RSS +${(growth / 2 ** 20).toFixed(1)} MiB, bystander worst round trip ${worst(rtts).toFixed(0)} ms`);
    expect(growth).toBeLessThan(64 * 2 ** 20);
    expect(worst(rtts)).toBeLessThan(2_000);

    // Alice opens the document with a fresh id V declared in her hello; her presence shows V.
    const V = 777_000_111;
    const alice = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${V}`] });
    // mallory-0 (who has spent none of its budget: held ids are free) declares V and writes first.
    const squatter = await connectAs(url, SECRET, 'mallory-0', { capabilities: [`writes:${V}`] });
    const squat = await firstEdit(squatter, V, 5).catch((e: Error) => e.message);
    console.log(`mallory-0 writing under alice's declared id V: ${squat}`);

    const result = await firstEdit(alice, V, 5);
    console.log(`alice's first edit under her declared id: ${result}`);
    expect(squat).toMatch(/^closed 4403/);
    expect(result).toBe('acked');
    const reader = await connectAs(url, SECRET, 'bob');
    expect(reader.doc.getText('t').toString()).toBe('seed:hello');
    await Promise.all([seed.close(), alice.close(), reader.close()]);
  }, heavy ? 600_000 : 120_000);

  it("issue-11 rev4 attack (announce pool fill, blip): a newcomer's declared id stays hers for a grace period after her connection drops; a squat meanwhile is refused and her reconnect writes", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/announce-blip`;
    const seed = await connectAs(url, SECRET, 'carol');
    seed.type('seed:');
    await seed.waitForAck(seed.seq);
    const V = 777_000_222;
    const first = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${V}`] });
    await first.close(); // a network blip before her first edit
    const squatter = await connectAs(url, SECRET, 'mallory', { capabilities: [`writes:${V}`] });
    const squat = await firstEdit(squatter, V, 5).catch((e: Error) => e.message);
    console.log(`mallory writing under alice's id during her blip: ${squat}`);
    const back = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${V}`] });
    const result = await firstEdit(back, V, 5);
    console.log(`alice's first edit after reconnecting: ${result}`);
    expect(squat).toMatch(/^closed 4403/);
    expect(result).toBe('acked');
    await Promise.all([seed.close(), back.close()]);
  }, 60_000);
});
