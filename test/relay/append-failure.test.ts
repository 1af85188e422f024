/**
 * Regression (issue 11 review): an update whose append failed stayed in the relay's memory; when
 * its sender resent it while the document held pending content (anyone can leave some), the
 * relay took the resend for a duplicate, acknowledged it and stored nothing. After a crash the
 * acknowledged update, and every update built on it, were gone. Now a failed append reloads the
 * document from storage, and an update that integrates completely is always stored as received.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import WebSocket from 'ws';
import { CloseCode, MemoryDocStore, type AppendResult } from '@capsync/core';
import { createClient, type WebSocketConstructor } from '@capsync/client';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { startRelay } from '../support/relay-fixture.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { REMOTE } from '../support/wire-doc-client.js';

/** A memory store whose next append fails once when armed (a transient disk error). */
class FlakyStore extends MemoryDocStore {
  failNext = false;
  override async append(name: string, update: Uint8Array): Promise<AppendResult> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('EIO (injected)');
    }
    return super.append(name, update);
  }
}

/** A memory store whose next append, when armed, fails and stores nothing. */
class RefusingStore extends MemoryDocStore {
  refuseNext = false;
  override async append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult> {
    if (this.refuseNext) {
      this.refuseNext = false;
      throw new Error('refused (injected, nothing stored)');
    }
    return super.append(name, update, incarnation);
  }
}

const BARRIER = new Uint8Array([0, 0]);

/** A RefusingStore whose next load, when gated, waits for the test to open the gate. */
class GatedLoadStore extends RefusingStore {
  gate: Promise<void> | null = null;
  loadStarted: (() => void) | null = null;
  override async load(name: string): ReturnType<MemoryDocStore['load']> {
    const gate = this.gate;
    if (gate) {
      this.gate = null;
      this.loadStarted?.();
      await gate;
    }
    return super.load(name);
  }
}

/**
 * Client `a` writes 'base', then ' dropped', whose append `store` refuses: the relay reloads the
 * document, and its load waits until the test calls `openGate` (resolves once it waits).
 */
async function reloadingAfterFailedAppend(relay: { docUrl(doc: string): string }, store: GatedLoadStore): Promise<{ a: ProtocolClient; openGate: () => void }> {
  const a = await ProtocolClient.synced(relay.docUrl('d'));
  a.type('base');
  await a.waitForAck(a.seq);
  let openGate!: () => void;
  store.gate = new Promise<void>((resolve) => (openGate = resolve));
  const loading = new Promise<void>((resolve) => (store.loadStarted = resolve));
  store.refuseNext = true;
  a.type(' dropped');
  await loading;
  return { a, openGate };
}

/** A memory store whose next append, when armed, commits and then fails (a timeout after the commit). */
class CommitThenFailStore extends MemoryDocStore {
  failAfterCommit = false;
  override async append(name: string, update: Uint8Array): Promise<AppendResult> {
    const result = await super.append(name, update);
    if (!this.failAfterCommit) return result;
    this.failAfterCommit = false;
    throw new Error('lost the answer to a commit (injected)');
  }
}

/** An update of `client` at clock 1 whose clock 0 never arrives: Yjs holds it back as pending. */
function danglingUpdate(client: number): Uint8Array {
  const d = new Y.Doc();
  d.clientID = client;
  d.getText('t').insert(0, 'zz');
  const firstStruct = encoding.createEncoder();
  encoding.writeVarUint(firstStruct, 1);
  encoding.writeVarUint(firstStruct, client);
  encoding.writeVarUint(firstStruct, 1);
  return Y.diffUpdate(Y.encodeStateAsUpdate(d), encoding.toUint8Array(firstStruct));
}

/** Resolves once the relay processed everything `client` sent before (one connection is in order). */
async function roundTrip(client: ProtocolClient, id: number): Promise<void> {
  client.sendMessage({ type: 'ping', id });
  await client.waitFor(() => client.received.some((m) => m.type === 'pong' && m.id === id), `pong ${id}`);
}

describe('append failures', () => {
  it('an update resent after its append failed is stored before it is acknowledged, even while the document holds pending content', async () => {
    const store = new FlakyStore();
    const relay = await startRelay({ storage: store });
    try {
      const url = relay.docUrl('d');
      const alice = new Y.Doc();
      alice.getText('t').insert(0, 'hello');
      const update = Y.encodeStateAsUpdate(alice);

      const first = await ProtocolClient.synced(url);
      store.failNext = true;
      first.sendMessage({ type: 'update', update });
      expect((await first.waitClosed()).code).toBe(CloseCode.StorageUnavailable);

      const bob = await ProtocolClient.synced(url);
      bob.type('!');
      await bob.waitForAck(bob.seq);
      const other = await ProtocolClient.synced(url);
      other.sendMessage({ type: 'update', update: danglingUpdate(424242) });
      await roundTrip(other, 1);

      const again = await ProtocolClient.synced(url);
      again.sendMessage({ type: 'update', update });
      await again.waitForAck(again.seq);

      // What a relay restarted after a crash would load.
      const stored = await store.load('d');
      const reloaded = new Y.Doc();
      for (const u of stored.updates) Y.applyUpdate(reloaded, u);
      expect(reloaded.getText('t').toString()).toContain('hello');
      await Promise.all([again.close(), other.close(), bob.close()]);
    } finally {
      await relay.close();
    }
  });

  it('a quorum flush is answered after a failed append whose content storage holds after all', async () => {
    // The reload after the failure finds the content stored: the client's resync then sends
    // nothing, so no later append marks it durable; the reload itself must (it was a quorum
    // flush waiting forever in a PostgreSQL cluster whose commit outlived its statement timeout).
    const store = new CommitThenFailStore();
    const relay = await startRelay({ storage: store });
    const client = createClient({ url: relay.url, storage: 'memory', WebSocket: WebSocket as unknown as WebSocketConstructor, ...TEST_CLIENT_DEFAULTS });
    try {
      const h = await client.open('d');
      await h.whenSynced({ timeoutMs: 10_000 });
      h.doc.getText('t').insert(0, 'a');
      await h.flush({ durability: 'quorum', timeoutMs: 10_000 });
      store.failAfterCommit = true;
      h.doc.getText('t').insert(1, 'b');
      await h.flush({ durability: 'quorum', timeoutMs: 10_000 });
      const stored = new Y.Doc();
      for (const u of (await store.load('d')).updates) Y.applyUpdate(stored, u);
      expect(stored.getText('t').toString()).toBe('ab');
    } finally {
      await client.close();
      await relay.close();
    }
  });

  // Review of the fix above: the reload marked everything applied durable, the failed append's
  // content too (stored nowhere), and a quorum barrier behind it was answered before its sender
  // was closed (when an update of its still waited ahead of the failed one).
  for (const pendingAhead of [false, true]) {
    it(`a quorum barrier behind an update whose append failed is never answered (an update waiting ahead of it: ${pendingAhead})`, async () => {
      const store = new RefusingStore();
      const relay = await startRelay({ storage: store });
      try {
        const a = await ProtocolClient.synced(relay.docUrl('d'), { capabilities: ['quorum'] });
        a.type('base');
        await a.waitForAck(a.seq);
        if (pendingAhead) a.sendMessage({ type: 'update', update: danglingUpdate(777) });
        const next = new Y.Doc();
        next.clientID = 4242;
        Y.applyUpdate(next, Y.encodeStateAsUpdate(a.doc));
        next.getText('t').insert(4, 'LOST');
        store.refuseNext = true;
        a.sendMessage({ type: 'update', update: Y.encodeStateAsUpdate(next, Y.encodeStateVector(a.doc)) });
        a.sendMessage({ type: 'update', update: BARRIER });
        const barrier = a.seq;
        await a.waitClosed();
        expect(a.received.filter((m) => m.type === 'quorum-ack' && m.seq >= barrier)).toEqual([]);
        const stored = new Y.Doc();
        for (const u of (await store.load('d')).updates) Y.applyUpdate(stored, u);
        expect(stored.getText('t').toString()).toBe('base');
      } finally {
        await relay.close();
      }
    });
  }

  it('a client that connects while the document reloads gets the state vector of the reloaded document, and sends what the reload dropped', async () => {
    // Its step 1 went out from the document being replaced (it held the failed update): the
    // client answered that the relay had everything, and the relay never got it back (seen in
    // postgres-cluster-quorum: a quorum flush that never came, the update not in the relay's copy).
    const store = new GatedLoadStore();
    const relay = await startRelay({ storage: store });
    try {
      const { a, openGate } = await reloadingAfterFailedAppend(relay, store);
      const b = await ProtocolClient.connect(relay.docUrl('d'));
      // b holds what the reload drops (as a's replica does, or another tab's), unsent: it sends
      // what the relay's step 1 says the relay lacks.
      Y.applyUpdate(b.doc, Y.encodeStateAsUpdate(a.doc), REMOTE);
      openGate();
      await b.waitFor(() => b.received.some((m) => m.type === 'ack') || undefined, 'the ack of its answer to the relay');
      const stored = new Y.Doc();
      for (const u of (await store.load('d')).updates) Y.applyUpdate(stored, u);
      expect(stored.getText('t').toString()).toBe('base dropped');
      await Promise.all([b.close(), a.close()]);
    } finally {
      await relay.close();
    }
  });

  it('an HTTP write while the document reloads is refused (503, to retry), never applied to the document being replaced', async () => {
    // Applied then, it was stored and answered durable, missing from the live document, and
    // gone from storage at the next compaction.
    const store = new GatedLoadStore();
    const relay = await startRelay({ storage: store });
    try {
      const { a, openGate } = await reloadingAfterFailedAppend(relay, store);
      const h = new Y.Doc();
      h.getText('h').insert(0, 'HTTP');
      const post = (): Promise<Response> => fetch(`${relay.httpUrl}/v1/docs/d/update`, { method: 'POST', body: Buffer.from(Y.encodeStateAsUpdate(h)), headers: { 'content-type': 'application/octet-stream' } });
      const refused = await post();
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('unavailable');
      openGate();
      await a.waitClosed();
      // Once reloaded, the same write is taken, and the live document has it.
      const taken = await post();
      expect(taken.status).toBe(200);
      const fresh = await ProtocolClient.synced(relay.docUrl('d'));
      expect(fresh.doc.getText('h').toString()).toBe('HTTP');
      await fresh.close();
    } finally {
      await relay.close();
    }
  });

  it('a server document opened while the document reloads waits for the reload: its copy lacks what the reload dropped, and its edits commit', async () => {
    // Copied from the document being replaced, it held the dropped update; an edit built on it
    // waited for a dependency that never came, and its flush failed.
    const store = new GatedLoadStore();
    const relay = await startRelay({ storage: store });
    try {
      const { a, openGate } = await reloadingAfterFailedAppend(relay, store);
      // Past its timeout it gives up with 'unavailable' (the reload waits for storage).
      await expect(relay.openDocument('d', { timeoutMs: 30 })).rejects.toMatchObject({ code: 'unavailable' });
      let opened = false;
      const opening = relay.openDocument('d').then((doc) => {
        opened = true;
        return doc;
      });
      const other = await ProtocolClient.connect(relay.docUrl('other'));
      await roundTrip(other, 1); // turns of the relay's loop, at least
      await other.close();
      expect(opened).toBe(false);
      openGate();
      const server = await opening;
      expect(server.doc.getText('t').toString()).toBe('base');
      server.doc.getText('t').insert(4, '!');
      await server.flush();
      const stored = new Y.Doc();
      for (const u of (await store.load('d')).updates) Y.applyUpdate(stored, u);
      expect(stored.getText('t').toString()).toBe('base!');
      await server.close();
      await a.close();
    } finally {
      await relay.close();
    }
  });
});
