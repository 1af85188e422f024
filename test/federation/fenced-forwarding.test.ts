/**
 * Fenced values in a mesh with one lock authority relay: the authority performs every fenced
 * write, so a writer on another relay is checked against the state every fenced write went
 * through, not against its own relay's replica, which may lag behind.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TestDevice } from '../support/client-fixture.js';
import { codeOf } from '../support/error-code.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { waitForEvent } from '../support/wait.js';
import { MESH_TOKEN, whenEndpoint } from './mesh-fixture.js';
import type { EventEmitter } from 'node:events';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(): Promise<{ a: TestRelay; b: TestRelay; meshAB: FaultProxy; meshBA: FaultProxy; locksBA: FaultProxy }> {
  const a = await startRelay({ relayId: 'a', lockTimeoutMs: 1000, peerToken: MESH_TOKEN });
  cleanup.push(() => a.dispose());
  // Separate proxies for replication and for the lock authority, to cut one and not the other.
  const meshBA = await FaultProxy.start(a.port);
  const locksBA = await FaultProxy.start(a.port);
  const meshAB = await FaultProxy.start(1, { mode: 'reset' });
  cleanup.push(async () => {
    await Promise.all([meshBA.close(), locksBA.close(), meshAB.close()]);
  });
  const b = await startRelay({ relayId: 'b', peers: [meshBA.url], lockAuthority: locksBA.url, lockTimeoutMs: 1000, peerToken: MESH_TOKEN });
  cleanup.push(() => b.dispose());
  meshAB.setTarget(b.port);
  meshAB.setMode('pass');
  await whenEndpoint(b.relay.mesh.endpoints[0]!);
  return { a, b, meshAB, meshBA, locksBA };
}

describe('fenced writes with a lock authority relay', () => {
  it('are written by the authority and reach clients of both relays', async () => {
    const { a, b } = await setup();
    const onA = await new TestDevice(a.url, 'memory', 'a').open('stock');
    const onB = await new TestDevice(b.url, 'memory', 'b').open('stock');
    cleanup.push(() => onA.close(), () => onB.close());
    const lease = await onB.client.locks.acquire('sku-1', { ttlMs: 5000 });
    await onB.handle.cp.set('sku-1', 10, lease, { ifRev: 0 });
    // The writer sees its value at once (it arrived before the answer).
    expect(onB.handle.cp.get('sku-1')).toBe(10);
    await waitForEvent(onA.handle.doc as unknown as EventEmitter, 'update', () => onA.handle.cp.get('sku-1') === 10 || undefined, 'value on relay a');
    await lease.release();
  });

  it("refuses a read-modify-write based on a stale replica (ifRev) even when the writer's relay lags", async () => {
    const { a, b, meshAB, meshBA } = await setup();
    const onA = await new TestDevice(a.url, 'memory', 'a').open('stock');
    const onB = await new TestDevice(b.url, 'memory', 'b').open('stock');
    cleanup.push(() => onA.close(), () => onB.close());
    const first = await onA.client.locks.acquire('sku', { ttlMs: 5000 });
    await onA.handle.cp.set('sku', 5, first, { ifRev: 0 });
    await first.release();
    await waitForEvent(onB.handle.doc as unknown as EventEmitter, 'update', () => onB.handle.cp.get('sku') === 5 || undefined, 'first value on b');

    // Replication between the relays stops; the lock authority stays reachable from b.
    meshAB.setMode('reset');
    meshBA.setMode('reset');
    await whenEndpoint(b.relay.mesh.endpoints[0]!, false);
    const second = await onA.client.locks.acquire('sku', { ttlMs: 5000 });
    await onA.handle.cp.set('sku', 4, second, { ifRev: onA.handle.cp.entry('sku')!.rev });
    await second.release();

    // b's replica still says 5 at the old revision; a write based on it must not win.
    const stale = onB.handle.cp.entry('sku')!;
    expect(stale.value).toBe(5);
    const third = await onB.client.locks.acquire('sku', { ttlMs: 5000 });
    expect(await codeOf(onB.handle.cp.set('sku', (stale.value as number) - 1, third, { ifRev: stale.rev }))).toBe('conflict');
    await third.release();
  });

  it('answers Unavailable when the authority cannot be reached, and works again after', async () => {
    const { b, locksBA } = await setup();
    const onB = await new TestDevice(b.url, 'memory', 'b').open('stock', { lockTimeoutMs: 3000 });
    cleanup.push(() => onB.close());
    const lease = await onB.client.locks.acquire('k', { ttlMs: 10_000 });
    locksBA.setMode('hold');
    const started = performance.now();
    expect(await codeOf(onB.handle.cp.set('k', 1, lease))).toBe('unavailable');
    expect(performance.now() - started).toBeLessThan(2500);
    locksBA.setMode('pass');
    const again = await onB.client.locks.acquire('k2', { ttlMs: 5000 });
    await onB.handle.cp.set('k2', 2, again);
    expect(onB.handle.cp.get('k2')).toBe(2);
  });
});
