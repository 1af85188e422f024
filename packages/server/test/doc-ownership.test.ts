import { describe, expect, it } from 'vitest';
import { MemoryDocStore } from '@capsync/core';
import { createLogger } from '../src/logger.js';
import { RelayMetrics } from '../src/metrics.js';
import { ClientOwners } from '../src/relay/client-owners.js';
import { DocOwnership } from '../src/relay/doc-ownership.js';
import { StorageOutage } from '../src/relay/storage-outage.js';
import { StorageRetries } from '../src/relay/storage-retries.js';

const logger = createLogger('silent');
const retries = (): StorageRetries => new StorageRetries(new StorageOutage(new RelayMetrics()));

async function setup() {
  const store = new MemoryDocStore();
  const owners = await ClientOwners.load('doc', store, logger, retries());
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
    const reloaded = await ClientOwners.load('doc', store, logger, retries());
    expect(reloaded.budgetOf('mallory')).toBe(2);
    expect(reloaded.budgetOf('bob')).toBe(1);
    expect(reloaded.get(10)).toBeUndefined();
    expect(reloaded.get(11)).toBe('bob');
    // A peer cannot plant carried records (negative ids) through its claims.
    reloaded.learn([{ owner: 'bob', clientIds: [-1 - 10] }]);
    expect(reloaded.budgetOf('bob')).toBe(1);
  });

  it("declared ids are held per connection (first wins, a connection's own 16 at most, one declaration each), with no document pool to fill", async () => {
    const { owners } = await setup();
    const alice = {};
    const mallory = {};
    owners.announce('alice', [1], alice);
    owners.announce('mallory', [1, ...Array.from({ length: 20 }, (_, i) => 2 + i)], mallory);
    expect(owners.announcedBy(1)).toBe('alice'); // first wins
    expect(owners.announcedBy(17)).toBe('mallory'); // ids 2..17: sixteen
    expect(owners.announcedBy(18)).toBeUndefined();
    owners.announce('mallory', [30], mallory); // one declaration per connection
    expect(owners.announcedBy(30)).toBeUndefined();
    // 20,000 connections' worth of declarations: a newcomer's id is still held.
    for (let k = 0; k < 1250; k++) owners.announce(`m${k % 10}`, Array.from({ length: 16 }, (_, i) => 1000 + 16 * k + i), {});
    owners.announce('carol', [200], {});
    expect(owners.announcedBy(200)).toBe('carol');
    await owners.claim('alice', [1]);
    expect(owners.announcedBy(1)).toBeUndefined(); // owned now, no longer merely held
  });

  it("a connection leaving keeps its ids its identity's for a grace period (16 per identity, its own oldest first); a reconnect takes them back", async () => {
    const { owners } = await setup();
    const first = {};
    owners.announce('alice', [1, 2], first);
    owners.release(first);
    expect(owners.announcedBy(1)).toBe('alice');
    // The same identity's new connection takes them back; then its leaving lets them go again.
    const second = {};
    owners.announce('alice', [1], second);
    owners.announce('bob', [2], {}); // still alice's (released, in its grace period)
    expect(owners.announcedBy(2)).toBe('alice');
    // Alice's own churn: 20 connections of 1 id each leave; only her 16 latest stay held.
    for (let k = 0; k < 20; k++) {
      const c = {};
      owners.announce('alice', [100 + k], c);
      owners.release(c);
    }
    expect(owners.announcedBy(1)).toBe('alice'); // held by a live connection: not in the grace pool
    expect(owners.announcedBy(100)).toBeUndefined();
    expect(owners.announcedBy(119)).toBe('alice');
    // Mallory's churn never pushes out alice's released holds.
    for (let k = 0; k < 20; k++) {
      const c = {};
      owners.announce('mallory', Array.from({ length: 16 }, (_, i) => 10_000 + 16 * k + i), c);
      owners.release(c);
    }
    expect(owners.announcedBy(119)).toBe('alice');
    owners.release(second);
    expect(owners.announcedBy(1)).toBe('alice');
  });

  it("an id two connections of its identity declared (a tab uploading another tab's edits) stays held until the last leaves", async () => {
    const { owners } = await setup();
    const tabA = {};
    const tabB = {};
    owners.announce('alice', [1, 2], tabA);
    owners.announce('alice', [2, 1], tabB);
    owners.release(tabA);
    // Still held by tab B's live connection: alice's own churn of released holds cannot drop it.
    for (let k = 0; k < 20; k++) {
      const c = {};
      owners.announce('alice', [100 + k], c);
      owners.release(c);
    }
    expect(owners.announcedBy(1)).toBe('alice');
    expect(owners.announcedBy(2)).toBe('alice');
    await owners.claim('alice', [2]);
    owners.release(tabB); // 2 is owned now; 1 goes to alice's released holds
    expect(owners.get(2)).toBe('alice');
    expect(owners.announcedBy(1)).toBe('alice');
  });
});
