import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { MemoryStorage } from '@capsync/client';
import { testScope } from '../support/test-scope.js';
import { withTimeout } from '../support/wait.js';

/**
 * The client stores a relay update as received instead of letting Yjs re-encode it
 * (client/sync/remote-apply.ts); its own `update` listener is detached meanwhile. An app whose
 * observer writes whenever a remote change comes must still have that write sent and stored.
 */
describe('updates from the relay', () => {
  const scope = testScope();

  it('an observer that writes when a remote change comes: its write reaches the relay and the local replica', async () => {
    const relay = await scope.relay();
    const storage = new MemoryStorage();
    const a = await scope.client(relay.url, { storage }).open('echo');
    const b = await scope.client(relay.url).open('echo');
    await Promise.all([a.whenSynced({ timeoutMs: 10_000 }), b.whenSynced({ timeoutMs: 10_000 })]);
    a.doc.getText('t').observe((e) => {
      if (!e.transaction.local) a.doc.getMap('m').set('answered', a.doc.getText('t').toString());
    });
    b.doc.getText('t').insert(0, 'ping');
    const answered = b.doc.getMap('m');
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (answered.get('answered') !== 'ping') return;
          b.doc.off('update', check);
          resolve();
        };
        b.doc.on('update', check);
        check();
      }),
      10_000,
      "a's answer at b",
    );
    await a.flush({ durability: 'relay', timeoutMs: 10_000 });
    await a.close();
    await relay.stop();

    // Offline, from the replica alone: the relay's update and the app's answer are both there.
    const offline = await scope.client(relay.url, { storage }).open('echo');
    expect(offline.doc.getText('t').toString()).toBe('ping');
    expect(offline.doc.getMap('m').get('answered')).toBe('ping');
  });

  it('an app that loads every subdocument the relay adds: loading it is not a local edit (review rev8)', async () => {
    const relay = await scope.relay();
    const a = await scope.client(relay.url).open('folders');
    const b = await scope.client(relay.url).open('folders');
    await Promise.all([a.whenSynced({ timeoutMs: 10_000 }), b.whenSynced({ timeoutMs: 10_000 })]);
    // The pattern of Yjs's documentation: load each subdocument as it arrives.
    a.doc.on('subdocs', ({ added }: { added: Set<Y.Doc> }) => added.forEach((sub) => sub.load()));
    const pendingSeen: number[] = [];
    a.on('pending', (n) => pendingSeen.push(n));
    const arrived = withTimeout(new Promise<void>((resolve) => a.doc.on('subdocs', () => resolve())), 10_000, 'the subdocument at a');
    b.doc.getMap('folders').set('one', new Y.Doc());
    await arrived;
    expect(a.doc.getSubdocs().size).toBe(1);
    await a.whenSynced({ timeoutMs: 10_000 });
    // An empty transaction of the parent was handed on as a local edit: pending, and sent.
    expect(pendingSeen.filter((n) => n > 0)).toEqual([]);
    expect(a.pending).toBe(0);
  });
});
