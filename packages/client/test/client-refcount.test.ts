import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient } from '../src/client.js';

describe('one handle per document name, reference counted', () => {
  it('open twice gives the same handle; it really closes only with the last reference', async () => {
    const client = createClient({ url: 'ws://127.0.0.1:9', storage: 'memory', crossTab: false, connect: false, WebSocket: WebSocket as never });
    const a = await client.open('notes');
    const b = await client.open('notes');
    expect(b).toBe(a);
    a.doc.getText('t').insert(0, 'kept');
    await a.close();
    // Still open for the second reference: edits keep being tracked.
    b.doc.getText('t').insert(4, '!');
    expect(b.pending).toBeGreaterThan(0);
    await b.close();
    // A fresh open after the last close is a new handle, loaded from local storage.
    const c = await client.open('notes');
    expect(c).not.toBe(a);
    expect(c.doc.getText('t').toString()).toBe('kept!');
    await client.close();
  });
});
