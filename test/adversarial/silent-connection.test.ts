/**
 * Issue 11 ("an idle or silent connection is closed after a configurable time"): a connection
 * that sends nothing, no frame and no pong, held its socket, its memory and its document
 * forever. Now the relay pings a connection silent for half of --connection-timeout-ms and
 * closes one silent for all of it with 4408 connection-timeout, on document and lock
 * connections alike; clients that answer pings (browsers, ws, the capsync client, y-websocket)
 * stay connected however idle they are.
 */
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { CloseCode } from '@capsync/core';
import { createClient } from '@capsync/client';
import { MemoryStorage } from '@capsync/client';
import { startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { TEST_CLIENT_DEFAULTS, until, whenStatus } from '../support/client-fixture.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { metricValue } from '../support/relay-observe.js';
import { waitForEvent, withTimeout } from '../support/wait.js';

const TIMEOUT_MS = 1_000;

/** Opens a raw WebSocket that never sends anything and does not answer pings. */
async function silentSocket(url: string): Promise<{ ws: WebSocket; openedAt: number; closed: Promise<{ code: number; reason: string; at: number }> }> {
  const ws = new WebSocket(url, { autoPong: false });
  ws.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), at: performance.now() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, openedAt: performance.now(), closed };
}

describe('silent connections are closed, idle healthy ones kept', () => {
  it('issue-11 silent connection: document and lock connections that send nothing and answer no ping are closed 4408 within the timeout; others stay served', async () => {
    await using relay = await startAttackedRelay(['--connection-timeout-ms', String(TIMEOUT_MS)]);
    const writer = await ProtocolClient.synced(`${relay.url}/notes`);
    await writer.waitForAck(writer.type('kept'));
    const bystander = await startBystander(relay.url);
    const doc = await silentSocket(`${relay.url}/notes`);
    const locks = await silentSocket(`${relay.url}/.capsync/locks`);
    const [docClosed, locksClosed] = await Promise.all([withTimeout(doc.closed, 10_000, 'doc close'), withTimeout(locks.closed, 10_000, 'locks close')]);
    const rtts = await bystander.stop();
    for (const [c, opened] of [[docClosed, doc.openedAt], [locksClosed, locks.openedAt]] as const) {
      expect(c.code).toBe(CloseCode.ConnectionTimeout);
      expect(c.reason).toMatch(/^connection-timeout: nothing received for 1000 ms/);
      // Pinged at half the timeout, closed at the timeout (timers and a loaded machine: some slack).
      expect(c.at - opened).toBeGreaterThanOrEqual(TIMEOUT_MS * 0.9);
      expect(c.at - opened).toBeLessThan(TIMEOUT_MS + 1_500);
    }
    expect(await metricValue(relay.httpUrl, 'capsync_refusals_total', { reason: 'connection-timeout' })).toBe(2);
    // The bystander and the writer sent pings and frames: never closed.
    expect(worst(rtts)).toBeLessThan(1_000);
    expect(writer.closeInfo).toBeNull();
    const reader = await ProtocolClient.synced(`${relay.url}/notes`);
    expect(reader.text).toBe('kept');
    await Promise.all([writer.close(), reader.close()]);
  });

  it('issue-11 silent connection: a client that stopped reading (paused socket) is closed and dropped', async () => {
    await using relay = await startAttackedRelay(['--connection-timeout-ms', String(TIMEOUT_MS)]);
    const c = await ProtocolClient.synced(`${relay.url}/notes`);
    const socket = (c.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    // It reads nothing, so it cannot answer the relay's pings.
    await waitForEvent(relay.child.stdout!, 'data', () => relay.logs.find((e) => e['code'] === 'connection-timeout'), 'the timeout close', 10_000);
    socket.resume();
    const info = await c.waitClosed(10_000);
    // The close frame gets through once it reads again, unless the relay already dropped the socket.
    expect([CloseCode.ConnectionTimeout, 1006]).toContain(info.code);
  });

  it('issue-11 silent connection: an idle capsync client and an idle y-websocket provider stay connected through several timeouts, and 4408 makes the capsync client reconnect', async () => {
    await using relay = await startAttackedRelay(['--connection-timeout-ms', String(TIMEOUT_MS)]);
    const sockets: WebSocket[] = [];
    class TrackedWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        sockets.push(this);
      }
    }
    // Its own heartbeat far apart: only answering the relay's pings keeps it connected.
    const client = createClient({ url: relay.url, WebSocket: TrackedWebSocket as never, ...TEST_CLIENT_DEFAULTS, heartbeatIntervalMs: 60_000, storage: new MemoryStorage() });
    const handle = await client.open('idle');
    await whenStatus(handle, 'synced');
    const statuses: string[] = [];
    handle.on('status', (s) => statuses.push(s));
    const stock = new Y.Doc();
    const provider = new WebsocketProvider(relay.url, 'idle', stock, { WebSocketPolyfill: WebSocket as never, disableBc: true });
    try {
      await withTimeout(new Promise<void>((resolve) => provider.once('sync', (s: boolean) => s && resolve())), 10_000, 'provider sync');
      provider.awareness.setLocalState(null); // no awareness renewals: the provider is silent too
      const providerSocket = provider.ws as unknown as WebSocket;
      let pings = 0;
      // Idle: the relay pings every half timeout; 8 pings are about 4 timeouts of silence.
      await waitForEvent(providerSocket, 'ping', () => ++pings >= 8 || undefined, '8 pings at the provider', 20_000);
      expect(providerSocket.readyState).toBe(WebSocket.OPEN);
      expect(provider.wsconnected).toBe(true);
      expect(statuses, 'the capsync client never went offline').toEqual([]);
      expect(await metricValue(relay.httpUrl, 'capsync_refusals_total', { reason: 'connection-timeout' })).toBe(0);
      // Both still sync.
      handle.doc.getText('t').insert(0, 'still here');
      await withTimeout(new Promise<void>((resolve) => stock.on('update', () => stock.getText('t').toString() === 'still here' && resolve())), 10_000, 'edit at the provider');

      // A capsync client that stopped answering is closed 4408, and reconnects when it can.
      const current = sockets.at(-1)!;
      const raw = (current as unknown as { _socket: Socket })._socket;
      raw.pause();
      await waitForEvent(relay.child.stdout!, 'data', () => relay.logs.find((e) => e['code'] === 'connection-timeout'), 'the timeout close', 10_000);
      raw.resume();
      await until(handle, 'status', () => statuses.includes('offline'), 'the client noticing the close', 10_000);
      await whenStatus(handle, 'synced', 10_000);
      expect(sockets.length).toBeGreaterThan(1);
    } finally {
      provider.destroy();
      await client.close();
    }
  });
});
