import { describe, expect, it } from 'vitest';
import { MemoryDocStore } from '@capsync/core';
import { createLogger } from '../src/logger.js';
import { RelayMetrics } from '../src/metrics.js';
import { ClientOwners } from '../src/relay/client-owners.js';
import { DocOwnership } from '../src/relay/doc-ownership.js';

const logger = createLogger('silent');

async function setup() {
  const store = new MemoryDocStore();
  const owners = await ClientOwners.load('doc', store, logger);
  const metrics = new RelayMetrics();
  return { store, owners, metrics, ownership: new DocOwnership('doc', owners, metrics, logger) };
}

describe('client id ownership of a document (ClientOwners, DocOwnership)', () => {
  it('learns claims from a peer: new ones recorded, counted per owner and stored; conflicts keep the first claim and count once', async () => {
    const { store, owners, metrics, ownership } = await setup();
    await owners.claim('alice', [1, 2]);
    const peer = { peerRelayId: 'r1' };
    ownership.learn([{ owner: 'bob', clientIds: [2, 3, 4] }], peer, { evict: () => [] } as never);
    expect(owners.get(2)).toBe('alice');
    expect(owners.get(3)).toBe('bob');
    expect(owners.budgetOf('alice')).toBe(2);
    expect(owners.budgetOf('bob')).toBe(2);
    ownership.learn([{ owner: 'bob', clientIds: [2] }], peer, { evict: () => [] } as never);
    expect((await metrics.clientOwnerConflicts.get()).values[0]!.value).toBe(1);
    await Promise.resolve();
    expect(new Map(await store.loadClientOwners('doc'))).toEqual(new Map([[1, 'alice'], [2, 'alice'], [3, 'bob'], [4, 'bob']]));
  });

  it('sends what it learned on to the other peer relays only, and every claim before a sync step 2 in bounded messages', async () => {
    const { owners, ownership } = await setup();
    const ids = Array.from({ length: 25_000 }, (_, i) => i + 1);
    await owners.claim('alice', ids.slice(0, 15_000));
    await owners.claim('bob', ids.slice(15_000));
    const messages = ownership.forSync();
    const sizes = messages.map((m) => m.reduce((n, c) => n + c.clientIds.length, 0));
    expect(Math.max(...sizes)).toBe(10_000);
    expect(sizes.length).toBe(3);
    expect(messages.flat().flatMap((c) => c.clientIds).sort((a, b) => a - b)).toEqual(ids);

    const from = { peerRelayId: 'r1', got: [] as unknown[], sendClaims(c: unknown) { this.got.push(c); } };
    const other = { peerRelayId: 'r2', got: [] as unknown[], sendClaims(c: unknown) { this.got.push(c); } };
    const client = { peerRelayId: undefined, got: [] as unknown[], sendClaims(c: unknown) { this.got.push(c); } };
    ownership.learn([{ owner: 'carol', clientIds: [99_999] }], from, { evict: () => [] } as never);
    ownership.flush([from, other, client]);
    expect(from.got).toEqual([]);
    expect(client.got).toEqual([]);
    expect(other.got).toEqual([[{ owner: 'carol', clientIds: [99_999] }]]);
  });

  it('carried ids count against the carrier until their author claims them, survive a reload, and are never owned or sent to peers', async () => {
    const { store, owners } = await setup();
    await owners.carry('mallory', [10, 11, 12]);
    await owners.carry('eve', [12]); // carried already: counted once, for the first carrier
    expect(owners.budgetOf('mallory')).toBe(3);
    expect(owners.budgetOf('eve')).toBe(0);
    expect(owners.get(10)).toBeUndefined();
    await owners.claim('bob', [11]); // the author claims it: bob's budget now, not mallory's
    expect(owners.budgetOf('mallory')).toBe(2);
    expect(owners.get(11)).toBe('bob');
    expect(owners.all()).toEqual([{ owner: 'bob', clientIds: [11] }]);
    const reloaded = await ClientOwners.load('doc', store, logger);
    expect(reloaded.budgetOf('mallory')).toBe(2);
    expect(reloaded.budgetOf('bob')).toBe(1);
    expect(reloaded.get(10)).toBeUndefined();
    expect(reloaded.get(11)).toBe('bob');
    // A peer cannot plant carried records (negative ids) through its claims.
    reloaded.learn([{ owner: 'bob', clientIds: [-1 - 10] }]);
    expect(reloaded.budgetOf('bob')).toBe(1);
  });

  it("declared ids are held per identity (its own oldest go past its cap, never another's) and not past the document cap", async () => {
    const { owners } = await setup();
    owners.announce('alice', [1], 3, 10);
    owners.announce('mallory', [2, 3, 4, 5, 6], 3, 10);
    expect(owners.announcedBy(1)).toBe('alice');
    expect([2, 3, 4, 5, 6].map((id) => owners.announcedBy(id))).toEqual([undefined, undefined, 'mallory', 'mallory', 'mallory']);
    for (let k = 0; k < 5; k++) owners.announce(`sock${k}`, [100 + 2 * k, 101 + 2 * k], 3, 10);
    // 1 + 3 + 6 = 10 held: the document cap; later ids are not held, and none is pushed out.
    expect(owners.announcedBy(1)).toBe('alice');
    expect(owners.announcedBy(108)).toBeUndefined();
    owners.announce('alice', [1], 3, 10); // announced again by its holder: still held
    await owners.claim('alice', [1]);
    expect(owners.announcedBy(1)).toBeUndefined(); // owned now, no longer merely held
    owners.announce('carol', [200], 3, 10);
    expect(owners.announcedBy(200)).toBe('carol'); // the claim freed a place
  });
});
