import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { CloseCode } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { killRelay, spawnRelay } from '../support/relay-process.js';
import { metricValue } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';
import { manyClients } from '../support/client-ids.js';

/**
 * issue 11, hostile review: `--max-clients-per-doc` was a per-document write lock-out anyone
 * with write access could trigger. Ten in-limit updates of 10,000 new client ids each filled the
 * document's 100,000 ids, and every later session (a fresh Yjs client id) was refused 4413 for
 * good. Now each identity may own at most `--max-clients-per-identity` ids of a document.
 */

const SECRET = 'adversarial-client-cap-brick-secret-0123456789';
const BUDGET = 1000; // the default of --max-clients-per-identity

async function bearer(sub: string): Promise<{ headers: Record<string, string> }> {
  return { headers: { authorization: `Bearer ${await mintToken(SECRET, { sub, lifetimeS: 3600 })}` } };
}


/** Sends `update` and resolves with 'acked' or the close it caused. */
async function outcome(client: ProtocolClient, update: Uint8Array): Promise<string> {
  client.sendMessage({ type: 'update', update });
  const seq = client.seq;
  return client.ackedOrClosed(seq, 60_000);
}

/** An honest new session (fresh client id) types and must be acknowledged. */
async function honestSessionWrites(url: string, text: string, options = {}): Promise<void> {
  const later = await ProtocolClient.synced(url, options);
  later.type(text);
  await later.waitForAck(later.seq);
  await later.close();
}

describe('adversarial: one writer bricking a document by filling its client id cap (issue 11 review)', () => {
  it(`issue-11 review (client cap brick): one identity owns at most ${BUDGET} client ids of a document (refused 4413 max-clients-per-identity past it, across reconnects and a restart); new sessions of others keep writing`, async () => {
    const relay = await startAttackedRelay(['--auth-secret', SECRET]);
    let restarted: Awaited<ReturnType<typeof spawnRelay>> | null = null;
    try {
      const url = `${relay.url}/bricked`;
      await honestSessionWrites(url, 'before', await bearer('alice'));
      const bystander = await startBystander(relay.url, `bystander?token=${await mintToken(SECRET, { sub: 'carol', lifetimeS: 3600 })}`);
      const rssBefore = await relay.rss();

      // The review's attack: ten updates of 10,000 new ids each (2 at 1,000 each by default). The
      // first one past the budget is refused; at most BUDGET ids are owned.
      const perUpdate = heavy ? 10_000 : BUDGET / 2;
      const attacker = await ProtocolClient.synced(url, await bearer('mallory'));
      const outcomes: string[] = [];
      for (let k = 0; k < (heavy ? 10 : 3); k++) {
        const result = await outcome(attacker, manyClients(10_000_000 + k * perUpdate, perUpdate));
        outcomes.push(result.split(':')[0]!);
        if (result !== 'acked') break;
      }
      const rtts = await bystander.stop();
      const rssGrowth = (await relay.rss()) - rssBefore;
      console.log(`mallory's updates of ${perUpdate} new ids: ${outcomes.join(', ')}; bystander worst RTT ${worst(rtts).toFixed(0)} ms; relay RSS +${(rssGrowth / 2 ** 20).toFixed(1)} MiB`);
      expect(outcomes.at(-1)).toBe(`closed ${CloseCode.LimitExceeded} limit-exceeded`);
      expect(outcomes.filter((o) => o === 'acked').length).toBe(heavy ? 0 : 2);
      expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-clients-per-identity' })).toBe(1);

      // Others are not affected: a new session of alice (a fresh client id) writes.
      await honestSessionWrites(url, ' after', await bearer('alice'));
      if (heavy) {
        // Refused at the first 10,000-id update, she owns none yet: she uses up her budget now.
        const fill = await ProtocolClient.synced(url, await bearer('mallory'));
        expect(await outcome(fill, manyClients(30_000_000, BUDGET))).toBe('acked');
        await fill.close();
      }

      // The budget is counted from the durable claims: a reconnect, or a restart, does not reset it.
      await killRelay(relay);
      restarted = await spawnRelay(['--data', relay.dataDir, '--auth-secret', SECRET]);
      const url2 = `${restarted.url}/bricked`;
      const again = await ProtocolClient.synced(url2, await bearer('mallory'));
      expect(await outcome(again, manyClients(20_000_000, 1))).toMatch(/^closed 4413 limit-exceeded/);
      await honestSessionWrites(url2, '!', await bearer('bob'));
      const check = await ProtocolClient.synced(url2, await bearer('carol'));
      expect(check.text).toBe('before after!');
      expect(check.doc.getMap('junk').size).toBe(BUDGET);
      await check.close();
    } finally {
      if (restarted) await killRelay(restarted);
      await relay[Symbol.asyncDispose]();
    }
  }, 120_000);

  it(`issue-11 review (client cap brick, open relay): one connection may introduce at most ${BUDGET} client ids to a document; an update introducing more (the review's 10,000) is refused 4413 max-clients-per-identity; later sessions keep writing`, async () => {
    await using relay = await startAttackedRelay();
    const url = `${relay.url}/bricked`;
    await honestSessionWrites(url, 'before');
    const attacker = await ProtocolClient.synced(url);
    const n = heavy ? 10_000 : 2 * BUDGET;
    const update = manyClients(10_000_000, n);
    const t0 = performance.now();
    const result = await outcome(attacker, update);
    console.log(`open relay: a ${n}-new-id update from one connection: ${result} after ${(performance.now() - t0).toFixed(0)} ms`);
    expect(result).toMatch(/^closed 4413 limit-exceeded/);
    await honestSessionWrites(url, ' after');
    const check = await ProtocolClient.synced(url);
    expect(check.text).toBe('before after');
    expect(check.doc.getMap('junk').size).toBe(0);
    await check.close();
  }, 60_000);
});
