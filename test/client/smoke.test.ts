import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient } from '@capsync/client';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';

describe('smoke', () => {
  let relay: TestRelay;
  afterEach(async () => relay?.dispose());
  it('two clients sync and acks drain pending', async () => {
    relay = await startRelay();
    const a = createClient({ url: relay.url, storage: 'memory', WebSocket: WebSocket as never });
    const b = createClient({ url: relay.url, storage: 'memory', WebSocket: WebSocket as never });
    const ha = await a.open('doc');
    const hb = await b.open('doc');
    ha.doc.getText('t').insert(0, 'hello');
    expect(ha.pending).toBe(1);
    await ha.flush({ durability: 'relay', timeoutMs: 5000 });
    expect(ha.pending).toBe(0);
    await hb.whenSynced({ timeoutMs: 5000 });
    expect(hb.doc.getText('t').toString()).toBe('hello');
    expect(ha.status).toBe('synced');
    await a.close();
    await b.close();
  });
});
