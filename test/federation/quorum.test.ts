import { afterEach, describe, expect, it } from 'vitest';
import { UnavailableError } from '@capsync/core';
import { TestDevice } from '../support/client-fixture.js';
import { codeOf } from '../support/error-code.js';
import { waitForEvent } from '../support/wait.js';
import type { EventEmitter } from 'node:events';
import { cut, startMesh, whenEndpoint, whenMeshUp, type Mesh } from './mesh-fixture.js';

let mesh: Mesh | null = null;
afterEach(async () => {
  await mesh?.close();
  mesh = null;
});

describe("flush({ durability: 'quorum' })", () => {
  it('resolves once a majority of three relays holds the update, and rejects Unavailable in a minority partition', async () => {
    mesh = await startMesh(3);
    await whenMeshUp(mesh.relays);
    const [r0, r1] = mesh.relays;
    const alone = await new TestDevice(r0!.url, 'memory', 'alone').open('q');
    const other = await new TestDevice(r1!.url, 'memory', 'other').open('q');
    alone.handle.doc.getMap('m').set('before', 1);
    await alone.handle.flush({ durability: 'quorum', timeoutMs: 10_000 });

    // r0 alone on one side, r1 and r2 on the other.
    cut(mesh, 0, 1);
    cut(mesh, 0, 2);
    await Promise.all([whenEndpoint(r0!.relay.mesh.endpoints[0]!, false), whenEndpoint(r0!.relay.mesh.endpoints[1]!, false)]);
    alone.handle.doc.getMap('m').set('during', 2);
    // Available: the write is local at once and durable on its own relay.
    expect(alone.handle.doc.getMap('m').get('during')).toBe(2);
    await alone.handle.flush({ durability: 'relay', timeoutMs: 5000 });
    const started = performance.now();
    const failure = await alone.handle.flush({ durability: 'quorum', timeoutMs: 800 }).then(
      () => null,
      (err: unknown) => err,
    );
    const took = performance.now() - started;
    expect(failure).toBeInstanceOf(UnavailableError);
    expect(await codeOf(Promise.reject(failure))).toBe('unavailable');
    expect(took).toBeGreaterThanOrEqual(790);
    expect(took).toBeLessThan(2000);
    // The majority side still has quorum.
    other.handle.doc.getMap('m').set('majority', 3);
    await other.handle.flush({ durability: 'quorum', timeoutMs: 10_000 });

    // Heal: the same write reaches a majority.
    cut(mesh, 0, 1, 'pass');
    cut(mesh, 0, 2, 'pass');
    await alone.handle.flush({ durability: 'quorum', timeoutMs: 10_000 });
    await alone.close();
    await other.close();
  });

  it("with two relays, a barrier after the other relay's change is answered: the peer is asked for a fresh ack", async () => {
    // The change from B counts as durable on B only through B's ack of a later message from A;
    // nothing else goes from A to B here, so A must ask (an empty update B acks once committed).
    mesh = await startMesh(2);
    await whenMeshUp(mesh.relays);
    const [a, b] = mesh.relays;
    const onA = await new TestDevice(a!.url, 'memory', 'on-a').open('q2');
    const onB = await new TestDevice(b!.url, 'memory', 'on-b').open('q2');
    onB.handle.doc.getMap('m').set('from-b', 1);
    await onB.handle.flush({ durability: 'relay', timeoutMs: 5_000 });
    await waitForEvent(onA.handle.doc as unknown as EventEmitter, 'update', () => onA.handle.doc.getMap('m').get('from-b') === 1 || undefined, "B's change on A");
    await onA.handle.flush({ durability: 'quorum', timeoutMs: 5_000 });
    await onA.close();
    await onB.close();
  });

  it('covers updates made offline and sent by the next connection', async () => {
    mesh = await startMesh(3);
    await whenMeshUp(mesh.relays);
    const device = new TestDevice(mesh.relays[2]!.url, 'memory', 'offline');
    const s = await device.open('offline', { connect: false });
    s.handle.doc.getText('t').insert(0, 'typed offline');
    const flushed = s.handle.flush({ durability: 'quorum', timeoutMs: 10_000 });
    s.handle.connect();
    await flushed;
    // A majority holds it: read it back from another relay's stored state.
    const peers = await Promise.all(mesh.relays.map(async (r) => (await (await fetch(`${r.httpUrl}/v1/docs/offline`)).json()) as { t?: string }));
    expect(peers.filter((p) => p.t === 'typed offline').length).toBeGreaterThanOrEqual(2);
    await s.close();
  });
});
