import { afterEach, describe, expect, it } from 'vitest';
import { decodeMessage, decodeMuxFrame, encodeMessage, encodeMuxFrame, type Message } from '@capsync/core';
import { createClient, type CapsyncClient } from '../src/client.js';
import type { WebSocketConstructor, WebSocketLike } from '../src/sync/websocket-like.js';

/**
 * Where the lock client's requests go, against a scripted relay: the lock session of the
 * multiplexed socket when the relay's socket hello says `locks`; a socket of its own to the
 * lock endpoint when it does not (a relay from before lock sessions, which refuses them).
 * Against real relays: test/client/multiplex-locks.test.ts.
 */

const MUX = '/.capsync/mux';
const LOCKS = `/${encodeURIComponent('.capsync/locks')}`;

interface Relay {
  /** Capabilities of the relay's hello on the multiplexed socket. */
  muxCapabilities: string[];
  sockets: ScriptedSocket[];
  /** Lock requests received, with where they came: 'mux' (a lock session) or 'locks'. */
  lockRequests: ('mux' | 'locks')[];
  /** The multiplexed socket's session-opens. */
  opens: Extract<Message, { type: 'session-open' }>[];
}

/** A WebSocket that plays a relay: answers hellos, accepts every session, grants every lock. */
class ScriptedSocket implements WebSocketLike {
  binaryType = 'arraybuffer';
  readyState = 0;
  readonly bufferedAmount = 0;
  private readonly listeners = new Map<string, ((event: never) => void)[]>();
  readonly path: string;

  constructor(
    url: string,
    private readonly relay: Relay,
  ) {
    this.path = new URL(url).pathname;
    relay.sockets.push(this);
    queueMicrotask(() => {
      this.readyState = 1;
      this.dispatch('open', {});
    });
  }

  addEventListener(type: string, listener: (event: never) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  send(data: Uint8Array): void {
    if (this.path === MUX) {
      const { sid, body } = decodeMuxFrame(data);
      const msg = decodeMessage(body);
      if (sid === 0 && msg.type === 'hello') this.reply(0, { type: 'hello', protocolVersion: 1, capabilities: this.relay.muxCapabilities });
      if (sid === 0 && msg.type === 'session-open') {
        this.relay.opens.push(msg);
        this.reply(0, { type: 'session-opened', sid: msg.sid, permission: 'write' });
      }
      if (msg.type === 'lock-request') this.grant(sid, msg.id, 'mux');
      return;
    }
    const msg = decodeMessage(data);
    if (msg.type === 'hello') this.reply(null, { type: 'hello', protocolVersion: 1, capabilities: ['locks'] });
    if (msg.type === 'lock-request') this.grant(null, msg.id, 'locks');
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.dispatch('close', { code, reason }));
  }

  private grant(sid: number | null, id: number, via: 'mux' | 'locks'): void {
    this.relay.lockRequests.push(via);
    this.reply(sid, { type: 'lock-reply', id, code: '', message: '', token: 7, ttlMs: 5_000 });
  }

  private reply(sid: number | null, msg: Message): void {
    const body = encodeMessage(msg);
    const data = sid === null ? body : encodeMuxFrame(sid, body);
    queueMicrotask(() => this.dispatch('message', { data }));
  }

  private dispatch(type: string, event: unknown): void {
    for (const listener of this.listeners.get(type) ?? []) listener(event as never);
  }
}

const clients: CapsyncClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function clientOf(relay: Relay): CapsyncClient {
  const WebSocket = function (url: string) {
    return new ScriptedSocket(url, relay);
  } as unknown as WebSocketConstructor;
  const c = createClient({ url: 'ws://relay.test', storage: 'memory', WebSocket, crossTab: false });
  clients.push(c);
  return c;
}

const relayWith = (muxCapabilities: string[]): Relay => ({ muxCapabilities, sockets: [], lockRequests: [], opens: [] });

describe('the lock client picks its link from the relay socket hello', () => {
  it('a relay that says `locks`: the lock session of the multiplexed socket, no socket of its own', async () => {
    const relay = relayWith(['ack', 'error', 'ping', 'locks', 'mux']);
    const c = clientOf(relay);
    const lease = await c.locks.acquire('k', { ttlMs: 5_000 });
    expect(lease.token).toBe(7);
    expect(relay.lockRequests).toEqual(['mux']);
    expect(relay.sockets.map((s) => s.path)).toEqual([MUX]);
    expect(relay.opens).toEqual([{ type: 'session-open', sid: 1, kind: 'locks', name: '', subdoc: '', capabilities: [] }]);
  });

  it('a relay that does not say `locks` (before lock sessions): a socket of its own to the lock endpoint', async () => {
    const relay = relayWith(['ack', 'error', 'ping', 'mux']);
    const c = clientOf(relay);
    const lease = await c.locks.acquire('k', { ttlMs: 5_000 });
    expect(lease.token).toBe(7);
    expect(relay.lockRequests).toEqual(['locks']);
    expect(relay.sockets.map((s) => s.path)).toEqual([MUX, LOCKS]);
    expect(relay.opens).toEqual([]);
  });
});
