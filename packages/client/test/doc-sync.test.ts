import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { channelPair, decodeMessage, encodeMessage, helloFor, type Channel, type Message } from '@capsync/core';
import { DocSync, type DocSyncHooks } from '../src/sync/doc-sync.js';
import { Outbox } from '../src/sync/outbox.js';

/** The relay's end of a memory pair, scripted by the test: records what the client sent. */
class Relay {
  readonly got: Message[] = [];
  closed: number | null = null;

  constructor(readonly channel: Channel) {
    channel.attach({
      message: (bytes) => this.got.push(decodeMessage(bytes)),
      close: (code) => (this.closed = code),
      error: () => {},
    });
  }

  send(msg: Message): void {
    this.channel.send(encodeMessage(msg));
  }

  of<T extends Message['type']>(type: T): Extract<Message, { type: T }>[] {
    return this.got.filter((m): m is Extract<Message, { type: T }> => m.type === type);
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await tick();
  expect(done()).toBe(true);
}

function setup() {
  const doc = new Y.Doc();
  const outbox = new Outbox('s', () => {});
  const acked: number[] = [];
  const errors: string[] = [];
  const hooks: DocSyncHooks = {
    acked: (seq) => acked.push(seq),
    batched: () => {},
    applyRemote: (update) => Y.applyUpdate(doc, update, 'relay'),
    awareness: () => {},
    message: () => {},
    error: (err) => errors.push(err.code),
    healthy: () => {},
    changed: () => {},
    status: () => 'test',
  };
  const sync = new DocSync('doc', doc, outbox, hooks);
  const connect = (): Relay => {
    const [client, relay] = channelPair();
    sync.connect(client);
    return new Relay(relay);
  };
  /** A local edit, as DocHandle queues it. */
  const edit = (text: string, id: string): void => {
    const before = Y.encodeStateVector(doc);
    doc.getText('t').insert(0, text);
    sync.queueLocal(Y.encodeStateAsUpdate(doc, before), outbox.add(id, doc.clientID), id);
  };
  return { doc, outbox, sync, connect, edit, acked, errors };
}

describe('DocSync (the client on core DocSession), over a memory pair', () => {
  it('numbers its step 2 and local batches from 1 per connection; the relay acks drain the outbox; it acknowledges nothing', async () => {
    const { outbox, connect, edit, acked } = setup();
    edit('offline', 'a');
    await tick();
    expect(outbox.pending).toBe(1);
    const relay = connect();
    await until(() => relay.of('sync-step-1').length === 1);
    relay.send(helloFor('relay'));
    relay.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    relay.send({ type: 'update', update: Y.encodeStateAsUpdate(new Y.Doc()) });
    await until(() => relay.of('sync-step-2').length === 1);
    edit('online', 'b');
    await until(() => relay.of('update').length === 1);
    relay.send({ type: 'ack', seq: 1, stateVector: new Uint8Array([0]) });
    await until(() => acked.length === 1);
    expect(outbox.pending).toBe(1);
    relay.send({ type: 'ack', seq: 2, stateVector: new Uint8Array([0]) });
    await until(() => outbox.pending === 0);
    expect(acked).toEqual([1, 2]);
    expect(relay.of('ack')).toEqual([]);
    expect(relay.closed).toBeNull();
  });

  it('whenSynced: one step 1 in flight; a waiter from before a connection is answered by its first round', async () => {
    const { sync, connect } = setup();
    const offline = sync.whenSynced(2000);
    const relay = connect();
    await until(() => relay.of('sync-step-1').length === 1);
    const second = sync.whenSynced(2000);
    await tick();
    expect(relay.of('sync-step-1')).toHaveLength(1);
    let done = 0;
    void offline.then(() => done++);
    void second.then(() => done++);
    relay.send({ type: 'sync-step-2', update: Y.encodeStateAsUpdate(new Y.Doc()) });
    await until(() => done === 1 && relay.of('sync-step-1').length === 2);
    expect(sync.caughtUp).toBe(true);
    relay.send({ type: 'sync-step-2', update: Y.encodeStateAsUpdate(new Y.Doc()) });
    await until(() => done === 2);
  });

  it('a quorum barrier goes out after this connection\'s step 2, numbered, and quorum-ack resolves it', async () => {
    const { doc, sync, connect } = setup();
    doc.getText('t').insert(0, 'held');
    const relay = connect();
    let flushed = false;
    void sync.flushQuorum(2000).then(() => (flushed = true));
    await tick();
    expect(relay.of('update')).toEqual([]);
    relay.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    await until(() => relay.of('update').length === 1);
    expect(relay.of('update')[0]!.update).toEqual(new Uint8Array([0, 0]));
    // Step 2 was message 1, the barrier message 2.
    relay.send({ type: 'quorum-ack', seq: 1 });
    await tick();
    expect(flushed).toBe(false);
    relay.send({ type: 'quorum-ack', seq: 2 });
    await until(() => flushed);
  });

  it('a replica that holds nothing sends no step 2 (an empty one costs the relay a barrier and an ack); a barrier still follows', async () => {
    const { sync, connect } = setup();
    const relay = connect();
    let flushed = false;
    void sync.flushQuorum(2000).then(() => (flushed = true));
    relay.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    await until(() => relay.of('update').length === 1);
    expect(relay.of('sync-step-2')).toEqual([]);
    // The barrier is message 1.
    relay.send({ type: 'quorum-ack', seq: 1 });
    await until(() => flushed);
  });

  it('an update of the relay that does not apply is reported, and the link stays up', async () => {
    const { connect, errors } = setup();
    const relay = connect();
    relay.send({ type: 'update', update: new Uint8Array([1, 2, 3, 4, 5]) });
    await until(() => errors.length === 1);
    expect(errors).toEqual(['invalid-update']);
    expect(relay.closed).toBeNull();
  });
});
