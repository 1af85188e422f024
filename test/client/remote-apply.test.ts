import { describe, expect, it } from 'vitest';
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
});
