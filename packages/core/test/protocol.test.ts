import { describe, expect, it } from 'vitest';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import * as syncProtocol from 'y-protocols/sync';
import { ProtocolError, decodeMessage, encodeMessage, type Message } from '@capsync/core';

const sv = new Uint8Array([1, 2, 3]);
const samples: Message[] = [
  { type: 'sync-step-1', stateVector: sv },
  { type: 'sync-step-2', update: sv },
  { type: 'update', update: sv },
  { type: 'awareness', update: sv },
  { type: 'query-awareness' },
  { type: 'auth-denied', reason: 'no' },
  { type: 'hello', protocolVersion: 1, capabilities: ['ack', 'error'] },
  { type: 'ping', id: 7 },
  { type: 'pong', id: 300 },
  { type: 'ack', seq: 42, stateVector: sv },
  { type: 'error', code: 'read-only', message: 'refused', seq: 7 },
];

function expectProtocolError(frame: Uint8Array, code: string): void {
  let caught: unknown;
  try {
    decodeMessage(frame);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  expect((caught as ProtocolError).code).toBe(code);
}

describe('wire protocol', () => {
  it.each(samples.map((m) => [m.type, m] as const))('round-trips %s', (_t, msg) => {
    expect(decodeMessage(encodeMessage(msg))).toEqual(msg);
  });

  it('is byte-compatible with y-protocols sync messages', () => {
    const doc = new Y.Doc();
    doc.getText('t').insert(0, 'hi');
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0);
    syncProtocol.writeSyncStep1(e, doc);
    expect(encodeMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(doc) })).toEqual(encoding.toUint8Array(e));
    const e2 = encoding.createEncoder();
    encoding.writeVarUint(e2, 0);
    syncProtocol.writeUpdate(e2, Y.encodeStateAsUpdate(doc));
    expect(encodeMessage({ type: 'update', update: Y.encodeStateAsUpdate(doc) })).toEqual(encoding.toUint8Array(e2));
  });

  it('refuses an empty frame', () => expectProtocolError(new Uint8Array(0), 'bad-message'));
  it('refuses unknown message types', () => expectProtocolError(new Uint8Array([7]), 'unknown-message-type'));
  it('refuses unknown sync kinds', () => expectProtocolError(new Uint8Array([0, 9, 0]), 'unknown-message-type'));
  it('refuses unknown capsync kinds', () => expectProtocolError(new Uint8Array([100, 9]), 'unknown-message-type'));
  it('refuses a truncated varint', () => expectProtocolError(new Uint8Array([0x80]), 'bad-message'));
  it('refuses a varint past 53 bits', () => expectProtocolError(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), 'bad-message'));
  it('refuses a length that runs past the frame', () => expectProtocolError(new Uint8Array([0, 2, 50, 1, 2]), 'bad-message'));
  it('refuses trailing bytes', () => expectProtocolError(new Uint8Array([3, 0]), 'bad-message'));
  it('refuses a hello with absurd capability counts', () => expectProtocolError(new Uint8Array([100, 0, 1, 0xff, 0x7f]), 'bad-message'));
});
