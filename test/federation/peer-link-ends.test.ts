/**
 * The two ends of a relay-to-relay document link run the same session host (PeerSessionHost)
 * and differ only where that is deliberate: the end that dialled speaks first and, when its
 * peer sends something it refuses, logs and resyncs on a new socket (the peer is trusted:
 * healing beats refusing); the end that was dialled answers the hello and closes bad input with
 * a named code, like any endpoint. Both take the other's content as trusted and acknowledge it.
 *
 * The peer on the other end is played by this test over a real WebSocket, so it can say what a
 * relay never would.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import * as Y from 'yjs';
import { CloseCode, MUX_PATH, RELAY_CAPABILITY, decodeMessage, encodeMessage, helloFor, relayIdCapability, relayIdOf, type Message } from '@capsync/core';
import { CAPSYNC_PROTOCOL, MESH_PATH, TOKEN_PROTOCOL_PREFIX } from '@capsync/server';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { waitForEvent } from '../support/wait.js';
import { whenEndpoint } from './mesh-fixture.js';

const PEER_TOKEN = 'peer-link-ends-token';

/** One document link a relay opened to the fake peer: what it sent, and how it closed. */
interface DialledLink {
  ws: WebSocket;
  url: string;
  got: Message[];
  closed: { code: number; reason: string } | null;
}

/**
 * A fake peer relay: answers the mesh control link's hello with its relay id, and records the
 * document links relays open to it. Emits 'change' on every link, message and close.
 */
class FakePeer extends EventEmitter {
  readonly links: DialledLink[] = [];
  private constructor(
    private readonly server: WebSocketServer,
    readonly url: string,
  ) {
    super();
  }

  static async start(relayId: string): Promise<FakePeer> {
    const server = new WebSocketServer({ port: 0, handleProtocols: (offered: Set<string>) => (offered.has(CAPSYNC_PROTOCOL) ? CAPSYNC_PROTOCOL : false) });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    const peer = new FakePeer(server, `ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('connection', (ws, req) => {
      ws.binaryType = 'nodebuffer';
      const path = decodeURIComponent((req.url ?? '').split('?')[0]!.slice(1));
      // An older relay (before the multiplexed endpoint): it takes `.capsync/mux` for a reserved
      // document name, so a relay peered with it links each document over a socket of its own.
      if (path === MUX_PATH) {
        ws.close(CloseCode.InvalidDocName, 'invalid-doc-name: names under .capsync/ are reserved');
        return;
      }
      if (path === MESH_PATH) {
        ws.on('message', (data: Buffer) => {
          if (decodeMessage(new Uint8Array(data)).type === 'hello') ws.send(encodeMessage(helloFor('peer', [relayIdCapability(relayId)])));
        });
        return;
      }
      const link: DialledLink = { ws, url: req.url ?? '', got: [], closed: null };
      peer.links.push(link);
      ws.on('message', (data: Buffer) => {
        link.got.push(decodeMessage(new Uint8Array(data)));
        peer.emit('change');
      });
      ws.on('close', (code, reason) => {
        link.closed = { code, reason: reason.toString() };
        peer.emit('change');
      });
      peer.emit('change');
    });
    return peer;
  }

  /** Resolves with the value `check` returns once it returns one (re-checked on every change). */
  until<T>(check: () => T | undefined | false, what: string): Promise<T> {
    return waitForEvent(this, 'change', check, what);
  }

  close(): Promise<void> {
    for (const ws of this.server.clients) ws.terminate();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** `link` once its opening (hello, sync step 1) arrived. */
function opened(link: DialledLink | undefined): DialledLink | undefined {
  return link && link.got.length >= 2 ? link : undefined;
}

function send(ws: WebSocket, msg: Message): void {
  ws.send(encodeMessage(msg));
}

function textUpdate(text: string, clientID: number): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = clientID;
  doc.getText('t').insert(0, text);
  return Y.encodeStateAsUpdate(doc);
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function relayPeeredWith(peer: FakePeer | null): Promise<TestRelay> {
  const relay = await startRelay({ relayId: 'r0', peerToken: PEER_TOKEN, meshSize: 2, ...(peer ? { peers: [peer.url] } : {}) });
  cleanups.push(() => relay.dispose());
  return relay;
}

describe('the end of a peer link that dialled', () => {
  it('speaks first, takes the peer content as trusted and acks it, and resyncs on a new socket after bad input (not closed for good)', async () => {
    const peer = await FakePeer.start('fake');
    cleanups.push(() => peer.close());
    const relay = await relayPeeredWith(peer);
    await whenEndpoint(relay.relay.mesh.endpoints[0]!);

    // A client loads the document on r0, which links it to its peer.
    const client = await ProtocolClient.synced(relay.docUrl('d'));
    cleanups.push(async () => client.ws.terminate());
    const first = await peer.until(() => opened(peer.links[0]), 'the first document link and its opening');
    expect(first.url).toContain('relay=r0');
    const [hello, step1] = first.got as [Extract<Message, { type: 'hello' }>, Message];
    expect(hello.type).toBe('hello');
    expect(hello.capabilities).toContain(RELAY_CAPABILITY);
    expect(relayIdOf(hello)).toBe('r0');
    expect(step1.type).toBe('sync-step-1');

    // A frame no relay sends: r0 closes this socket with the named code, and dials again.
    first.ws.send(new Uint8Array([0, 9]));
    const second = await peer.until(() => (first.closed ? opened(peer.links[1]) : undefined), 'the link reopened on a new socket');
    expect(first.closed!.code).toBe(CloseCode.BadMessage);
    expect(second.got[0]!.type).toBe('hello');

    // Over the new socket, the peer's content is applied (trusted) and acknowledged.
    send(second.ws, helloFor('relay-to-peer', [relayIdCapability('fake')]));
    send(second.ws, { type: 'sync-step-2', update: textUpdate('from the peer', 42) });
    await peer.until(() => second.got.some((m) => m.type === 'ack' && m.seq === 1), 'the ack of the peer step 2');
    await waitForEvent(client, 'message', () => client.text === 'from the peer' || undefined, 'the peer content at the client');
    expect(second.closed).toBeNull();
    expect(peer.links).toHaveLength(2);
  });
});

describe('the end of a peer link that was dialled', () => {
  it('answers the hello with its relay id, acks trusted content, and closes bad input with a named code', async () => {
    const relay = await relayPeeredWith(null);
    const link = await ProtocolClient.connect(`${relay.url}/d?relay=r9`, {
      protocols: [CAPSYNC_PROTOCOL, TOKEN_PROTOCOL_PREFIX + PEER_TOKEN],
      capabilities: [RELAY_CAPABILITY, relayIdCapability('r9')],
    });
    cleanups.push(async () => link.ws.terminate());
    await link.waitSynced();
    const hello = link.received.find((m): m is Extract<Message, { type: 'hello' }> => m.type === 'hello');
    expect(hello && relayIdOf(hello)).toBe('r0');

    link.sendMessage({ type: 'update', update: textUpdate('from r9', 43) });
    await link.waitForAck(link.seq);
    expect(relay.relay.registry.peek('d')).toBeDefined();
    const doc = await relay.relay.registry.peek('d')!;
    expect(doc.doc.getText('t').toString()).toBe('from r9');

    link.sendRaw(new Uint8Array([0, 9]));
    await waitForEvent(link, 'close', () => link.closeInfo ?? undefined, 'the link closed');
    expect(link.closeInfo!.code).toBe(CloseCode.BadMessage);
  });
});
