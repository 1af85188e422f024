import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CloseCode, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, decodeMessage, encodeMessage, errorCodeFromReason, type Message } from '@capsync/core';
import { ProtocolClient } from '../support/protocol-client.js';
import { protocols } from '../support/raw-locks.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';

/**
 * Issue 12: the protocol version every hello carries is checked. A hello outside what the
 * relay speaks ([MIN_PROTOCOL_VERSION, PROTOCOL_VERSION]) closes that one connection 4426
 * `protocol-version` (the client treats it as fatal: see client/test/relay-failover.test.ts);
 * other clients stay served.
 */
describe('protocol version check', () => {
  let relay: TestRelay;
  beforeEach(async () => {
    relay = await startRelay();
  });
  afterEach(async () => {
    await relay.close();
  });

  for (const version of [MIN_PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, 99]) {
    it(`a document connection whose hello says version ${version} is closed 4426 protocol-version; others are served`, async () => {
      const honest = await ProtocolClient.synced(`${relay.url}/doc`);
      const bad = await ProtocolClient.connect(`${relay.url}/doc`, { protocolVersion: version });
      const closed = await bad.waitClosed();
      expect(closed.code).toBe(CloseCode.ProtocolVersion);
      expect(errorCodeFromReason(closed.reason)).toBe('protocol-version');
      expect(closed.reason).toContain(`${version}`);
      // The relay never answered that hello.
      expect(bad.received.filter((m) => m.type === 'hello')).toEqual([]);
      honest.doc.getText('t').insert(0, 'still served');
      await honest.waitFor(() => honest.ackedSeq >= honest.seq || undefined, 'ack');
      await honest.close();
    });
  }

  it('a supported version gets the relay hello with its version', async () => {
    const c = await ProtocolClient.synced(`${relay.url}/doc`, { protocolVersion: PROTOCOL_VERSION });
    const hello = await c.waitFor(() => c.received.find((m) => m.type === 'hello'), 'relay hello');
    expect(hello).toMatchObject({ type: 'hello', protocolVersion: PROTOCOL_VERSION });
    await c.close();
  });

  it('a lock connection whose hello says version 99 is closed 4426 protocol-version', async () => {
    const ws = new WebSocket(`${relay.url}/.capsync/locks`, protocols());
    await once(ws, 'open');
    const received: Message[] = [];
    ws.on('message', (data: Buffer) => received.push(decodeMessage(new Uint8Array(data))));
    ws.send(encodeMessage({ type: 'hello', protocolVersion: 99, capabilities: ['ack', 'error'] }));
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    expect(code).toBe(CloseCode.ProtocolVersion);
    expect(errorCodeFromReason(reason.toString())).toBe('protocol-version');
    expect(received.filter((m) => m.type === 'hello')).toEqual([]);
  });
});
