import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '@capsync/core';
import { startAttackedRelay } from '../support/attack.js';
import { connectAs, replicaAs, updateOf } from '../support/client-ids.js';
import { mintToken } from '../support/tokens.js';
import { ProtocolClient } from '../support/protocol-client.js';

/**
 * Third review of issue 11, finding 2: the client id a capsync client declares in its hello
 * (`writes:<id>`) is held for its identity until it writes, in a per-document map of at most
 * 10,000 ids. Anyone who could open the document, read-only users included, could declare;
 * there was no per-identity bound, one connection could send any number of hellos (16 ids
 * each), and the map dropped its oldest first. So a read-only user pushed a newcomer's held id
 * out with 640 hellos, then declared it himself: her first edit was refused 4403 not-owner.
 * Now: only writers declare, a second hello closes the connection 4400, and each connection
 * holds at most 16 ids, let go (after a grace period for its identity) when it leaves; nothing
 * ever pushes out another's (fourth review: announce-pool-fill.test.ts).
 */

const SECRET = 'adversarial-announce-eviction-secret-0123456789';
const PER_IDENTITY = 32;

/** A hello declaring `ids`, as the capsync client sends (once per connection). */
function hello(ids: number[]) {
  return { type: 'hello' as const, protocolVersion: PROTOCOL_VERSION, capabilities: ['ack', 'error', ...ids.map((id) => `writes:${id}`)] };
}

async function firstEdit(alice: ProtocolClient, V: number, at: number): Promise<string> {
  const hers = replicaAs(alice, V);
  alice.sendMessage({ type: 'update', update: updateOf(hers, () => hers.getText('t').insert(at, 'hello')) });
  const seq = alice.seq;
  return alice.ackedOrClosed(seq);
}

describe('adversarial: evicting a newcomer’s declared client id', () => {
  it("issue-11 rev3 attack 2 (announce eviction): a read-only user's hellos neither hold nor push out ids (a second hello closes 4400); a writer's hellos on many connections push out nothing of another's; the newcomer's first edit is acknowledged", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET, '--max-clients-per-identity', String(PER_IDENTITY)]);
    const url = `${relay.url}/announce-eviction`;
    const seed = await connectAs(url, SECRET, 'carol');
    seed.type('seed:');
    await seed.waitForAck(seed.seq);

    // A read-only user declares W first: not held (he cannot write), so bob, who may write, keeps W.
    const W = 777_000_222;
    const readOnly = await mintToken(SECRET, { sub: 'mallory', lifetimeS: 3600, docs: { '*': 'read' } });
    const reader = await ProtocolClient.synced(url, { headers: { authorization: `Bearer ${readOnly}` }, capabilities: [`writes:${W}`] });

    // Alice opens the document with a fresh client id V, declared in her hello; she has not edited yet.
    const V = 777_000_111;
    const alice = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${V}`] });

    // The read-only user (who saw V in alice's presence) sends more hellos on his connection.
    const started = performance.now();
    let next = 900_000_000;
    for (let i = 0; i < 640; i++) reader.sendMessage(hello(Array.from({ length: 16 }, () => next++)));
    reader.sendMessage(hello([V]));
    const closed = await reader.waitClosed(10_000);
    console.log(`read-only user's 641 further hellos: closed ${closed.code} ${closed.reason} after ${(performance.now() - started).toFixed(0)} ms`);
    expect(closed.code).toBe(4400);

    // A writer (mallory with write access) declares 16 ids on each of 20 connections, then V:
    // each connection holds its own; V stays alice's.
    const writerConns: ProtocolClient[] = [];
    for (let c = 0; c < 20; c++) {
      writerConns.push(await connectAs(url, SECRET, 'mallory', { capabilities: Array.from({ length: 16 }, () => `writes:${next++}`) }));
    }
    const squatter = await connectAs(url, SECRET, 'mallory', { capabilities: [`writes:${V}`] });
    const hersAtV = await firstEdit(squatter, V, 5).catch((e: Error) => e.message);
    console.log(`mallory (writer) writing under alice's declared id V: ${hersAtV}`);
    expect(hersAtV).toMatch(/^closed 4403/);

    const result = await firstEdit(alice, V, 5);
    console.log(`alice's first edit under her declared id: ${result}`);
    expect(result).toBe('acked');
    // bob's first edit under W, which only the read-only user had declared before him.
    const bob = await connectAs(url, SECRET, 'bob', { capabilities: [`writes:${W}`] });
    expect(await firstEdit(bob, W, 10)).toBe('acked');
    const check = await connectAs(url, SECRET, 'carol');
    expect(check.text).toBe('seed:hellohello');
    await Promise.all([check.close(), seed.close(), alice.close(), bob.close(), ...writerConns.map((c) => c.close())]);
  }, 60_000);
});
