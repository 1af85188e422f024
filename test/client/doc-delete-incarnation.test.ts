/**
 * A client erases its replica on 'document-deleted' only when the relay's incarnation is newer
 * than the one the replica learned: a relay of an OLDER incarnation (restarted on memory
 * storage, its store restored from a backup) serves the replica instead, and the replica
 * stores that relay's incarnation. Its only copy is never lost to it.
 */
import { afterEach, expect, it } from 'vitest';
import type { CapsyncError, DocHandle } from '@capsync/client';
import { TestDevice } from '../support/client-fixture.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { withTimeout } from '../support/wait.js';

const relays: TestRelay[] = [];
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.dispose().catch(() => {})));
}, 20_000);

function errorOf(handle: DocHandle, code: string): Promise<CapsyncError> {
  return withTimeout(
    new Promise<CapsyncError>((resolve) => handle.on('error', (err: CapsyncError) => err.code === code && resolve(err))),
    10_000,
    `a ${code} error`,
  );
}

it('a replica that learned incarnation 1 is kept, and synced, by a relay restarted on memory storage (incarnation 0 again)', async () => {
  const first = await startRelay({ storage: 'memory' });
  const port = first.port;
  const device = new TestDevice(first.url, 'indexeddb', 'phone');
  const s0 = await device.open('notes');
  s0.handle.doc.getText('t').insert(0, 'old');
  await s0.handle.flush({ durability: 'relay' });
  await s0.close();
  // The document is deleted once: incarnation 1. The stale replica is erased (1 > its 0).
  expect((await fetch(`${first.httpUrl}/v1/docs/notes`, { method: 'DELETE' })).status).toBe(200);
  const stale = await device.open('notes', { connect: false });
  const refused = errorOf(stale.handle, 'document-deleted');
  stale.handle.connect();
  await refused;
  expect(stale.handle.cleared).not.toBeNull();
  await stale.handle.cleared;
  await stale.close();
  const s1 = await device.open('notes');
  s1.handle.doc.getText('t').insert(0, 'important');
  await s1.handle.flush({ durability: 'relay' });
  await s1.close();
  // The relay restarts on memory storage: everything gone, every incarnation 0 again.
  await first.dispose();
  const second = await startRelay({ storage: 'memory', port });
  relays.push(second);
  const s2 = await device.open('notes', { connect: false });
  s2.handle.doc.getText('t').insert(0, 'offline edit; ');
  const errors: string[] = [];
  s2.handle.on('error', (e: CapsyncError) => errors.push(e.code));
  s2.handle.connect();
  await s2.handle.flush({ durability: 'relay' });
  expect(s2.handle.cleared).toBeNull();
  await s2.close();
  expect(errors).toEqual([]);
  const s3 = await device.open('notes', { connect: false });
  const text = s3.handle.doc.getText('t').toString();
  await s3.close();
  expect(text).toBe('offline edit; important');
  expect((await (await fetch(`${second.httpUrl}/v1/docs/notes`)).json())).toEqual({ t: 'offline edit; important' });
}, 20_000);
