import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { startAttackedRelay } from '../support/attack.js';
import { connectAs, manyClients } from '../support/client-ids.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';

/**
 * Third review of issue 11, finding 1: content under client ids a writer did not declare
 * (`writes:<id>` in its hello) was accepted unclaimed, and unclaimed ids counted against
 * nothing: not `--max-clients-per-identity` (counted from claims), not per connection (only
 * for writers without identity). mallory, with a `sub`, declaring one id, introduced 60 fresh
 * ids with --max-clients-per-identity 5 --max-clients-per-doc 60, and alice's first edit was
 * refused 4413 for good. Now fresh ids a writer carries without declaring them count against
 * its budget, durably (recorded with the claims), without making them its own.
 */

const SECRET = 'adversarial-undeclared-client-budget-secret-0123456789';
const PER_IDENTITY = 5;
const PER_DOC = 60;


async function outcome(client: Awaited<ReturnType<typeof connectAs>>, update: Uint8Array): Promise<string> {
  client.sendMessage({ type: 'update', update });
  const seq = client.seq;
  return client.ackedOrClosed(seq, 20_000);
}

/** Alice's first edit in a fresh session (fresh id, declared like the capsync client does). */
async function aliceEdits(url: string, aliceId: number, text: string): Promise<string> {
  const alice = await connectAs(url, SECRET, 'alice', { capabilities: [`writes:${aliceId}`] });
  const mine = new Y.Doc();
  Y.applyUpdate(mine, Y.encodeStateAsUpdate(alice.doc));
  mine.clientID = aliceId;
  let update: Uint8Array | null = null;
  mine.on('update', (u: Uint8Array) => (update = u));
  mine.getText('t').insert(mine.getText('t').length, text);
  const result = await outcome(alice, update!);
  await alice.close();
  return result;
}

describe('adversarial: the per-identity client id budget bypassed by declaring one id', () => {
  it(`issue-11 rev3 attack 1 (undeclared client budget): a writer declaring writes:<one id> introduces at most ${PER_IDENTITY} client ids, also after a restart; it cannot fill --max-clients-per-doc and lock out later sessions`, async () => {
    const args = ['--auth-secret', SECRET, '--max-clients-per-identity', String(PER_IDENTITY), '--max-clients-per-doc', String(PER_DOC)];
    const relay = await startAttackedRelay(args);
    let restarted: Awaited<ReturnType<typeof spawnRelay>> | null = null;
    try {
      const url = `${relay.url}/undeclared-budget`;
      const mallory = await connectAs(url, SECRET, 'mallory', { capabilities: ['writes:7'] });
      // Within budget: 4 carried ids (and then 1 more) are fine, carried content is collaboration.
      expect(await outcome(mallory, manyClients(50_000_000, PER_IDENTITY - 1))).toBe('acked');
      const outcomes: string[] = [];
      for (let k = 0; k < PER_DOC / 10; k++) {
        const r = await outcome(mallory, manyClients(50_000_100 + k * 10, 10));
        outcomes.push(r.split(':')[0]!);
        if (r !== 'acked') break;
      }
      console.log(`mallory (declaring writes:7) after ${PER_IDENTITY - 1} carried ids, updates of 10 more: ${outcomes.join(', ')}`);
      expect(outcomes).toHaveLength(1);
      expect(outcomes[0]).toMatch(/^closed 4413/);

      // Durable: a restart does not give mallory a fresh budget.
      await killRelay(relay);
      restarted = await spawnRelay(['--data', relay.dataDir, ...args]);
      const url2 = `${restarted.url}/undeclared-budget`;
      const again = await connectAs(url2, SECRET, 'mallory', { capabilities: ['writes:7'] });
      const afterRestart = await outcome(again, manyClients(50_000_900, 2));
      console.log(`mallory after a relay restart, 2 more carried ids: ${afterRestart}`);
      expect(afterRestart).toMatch(/^closed 4413/);
      expect(await outcome(await connectAs(url2, SECRET, 'mallory', { capabilities: ['writes:7'] }), manyClients(50_000_950, 1))).toBe('acked');

      // alice, a later session, is served; the stored document is intact.
      const aliceOutcome = await aliceEdits(url2, 424_242, 'hello');
      console.log(`alice's first edit afterwards: ${aliceOutcome}`);
      expect(aliceOutcome).toBe('acked');
      const check = await connectAs(url2, SECRET, 'carol');
      expect(check.doc.getText('t').toString()).toBe('hello');
      expect(check.doc.getMap('junk').size).toBe(PER_IDENTITY);
      await check.close();
    } finally {
      if (restarted) await killRelay(restarted);
      else await killRelay(relay).catch(() => {});
      await rm(relay.dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
