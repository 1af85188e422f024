import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { MemoryDocStore } from '@capsync/core';
import { SqliteDocStore } from '@capsync/server';
import { GatedAppendStore } from '../support/gated-store.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import path from 'node:path';

describe('relay sync and durable acks', () => {
  let relay: TestRelay;
  const clients: ProtocolClient[] = [];
  const connect = async (doc: string, opts = {}) => {
    const c = await ProtocolClient.synced(relay.docUrl(doc), opts);
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    relay = await startRelay();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await relay.dispose();
  });

  it('syncs edits between clients and to late joiners', async () => {
    const a = await connect('doc');
    const b = await connect('doc');
    a.type('hello ');
    b.type('world');
    await a.waitFor(() => a.text.length === 11 || undefined, 'a to see both edits');
    await b.waitFor(() => b.text.length === 11 || undefined, 'b to see both edits');
    expect(a.text).toBe(b.text);
    const late = await connect('doc');
    expect(late.text).toBe(a.text);
  });

  it('keeps documents apart', async () => {
    const a = await connect('one');
    const b = await connect('two');
    a.type('only in one');
    await a.waitForAck(a.seq);
    const c = await connect('two');
    expect(c.text).toBe('');
    expect(b.text).toBe('');
  });

  it('acks an update only once it is committed to storage, with the post-commit state vector', async () => {
    const a = await connect('durable');
    const seq = a.type('must survive');
    await a.waitForAck(seq);
    // Read the database file independently of the relay: the acked update is there.
    const reader = new SqliteDocStore(path.join(relay.dataDir, 'capsync.db'));
    const stored = await reader.load('durable');
    await reader.close();
    const copy = new Y.Doc();
    for (const u of stored.updates) Y.applyUpdate(copy, u);
    expect(copy.getText('t').toString()).toBe('must survive');
    const ackSv = Y.decodeStateVector(a.lastAck!.stateVector);
    expect(ackSv.get(a.doc.clientID)).toBe(Y.getState(a.doc.store, a.doc.clientID));
  });

  it('counts every document message so acks name exact positions', async () => {
    const a = await connect('seq');
    // The initial sync step 2 (empty) was message 1; three edits make 2..4.
    a.type('a');
    a.type('b');
    const last = a.type('c');
    expect(last).toBe(4);
    await a.waitForAck(4);
    expect(a.ackedSeq).toBe(4);
  });

  it('sends capsync extension messages only to clients that said hello', async () => {
    const stock = await connect('ext', { hello: false });
    const aware = await connect('ext');
    stock.type('from stock');
    aware.type('from aware');
    await stock.waitFor(() => stock.text.length === 20 || undefined, 'both edits at stock');
    await aware.waitForAck(aware.seq);
    expect(stock.received.some((m) => m.type === 'hello' || m.type === 'ack' || m.type === 'error')).toBe(false);
    expect(aware.received.some((m) => m.type === 'hello')).toBe(true);
  });

  it('answers a heartbeat ping with a pong carrying the same id', async () => {
    const a = await connect('ping');
    a.sendMessage({ type: 'ping', id: 4242 });
    await a.waitFor(() => a.received.some((m) => m.type === 'pong' && m.id === 4242) || undefined, 'pong');
  });

  it('acks an empty update only after earlier writes to the document are committed', async () => {
    await relay.dispose();
    const store = new GatedAppendStore(new MemoryDocStore());
    relay = await startRelay({ storage: store });
    const a = await connect('barrier');
    const b = await connect('barrier');
    store.hold();
    a.type('x');
    await b.waitFor(() => b.text === 'x' || undefined, "a's edit at b");
    // b has nothing new to send, but its ack must still mean "everything you saw is durable".
    b.sendMessage({ type: 'update', update: new Uint8Array([0, 0]) });
    b.sendMessage({ type: 'ping', id: 1 });
    await b.waitFor(() => b.received.some((m) => m.type === 'pong') || undefined, 'pong');
    expect(b.ackedSeq).toBeLessThan(b.seq);
    store.release();
    await b.waitForAck(b.seq);
  });

  it('answers query-awareness and relays awareness, clearing it when a client leaves', async () => {
    const { Awareness, encodeAwarenessUpdate } = await import('y-protocols/awareness');
    const a = await connect('aw');
    const b = await connect('aw');
    const aw = new Awareness(a.doc);
    aw.setLocalState({ name: 'ann' });
    a.sendMessage({ type: 'awareness', update: encodeAwarenessUpdate(aw, [a.doc.clientID]) });
    await b.waitFor(() => b.received.some((m) => m.type === 'awareness') || undefined, 'awareness at b');
    const c = await connect('aw');
    c.sendMessage({ type: 'query-awareness' });
    await c.waitFor(() => c.received.some((m) => m.type === 'awareness') || undefined, 'awareness answer');
    const before = b.received.filter((m) => m.type === 'awareness').length;
    await a.close();
    await b.waitFor(() => b.received.filter((m) => m.type === 'awareness').length > before || undefined, 'removal at b');
    aw.destroy();
  });
});
