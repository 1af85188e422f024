import { describe, expect, it } from 'vitest';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import * as syncProtocol from 'y-protocols/sync';
import { LimitExceededError, NotOwnerError, ProtocolError, decodeMessage, encodeMessage, errorFromCode, type Message } from '@capsync/core';

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
  { type: 'lock-request', id: 1, op: 'acquire', key: 'stock/1', token: 0, ttlMs: 5000, waitMs: 100 },
  { type: 'lock-request', id: 2, op: 'renew', key: 'k', token: 2 ** 40, ttlMs: 10, waitMs: 0 },
  { type: 'lock-request', id: 3, op: 'release', key: 'ключ', token: 9, ttlMs: 0, waitMs: 0 },
  { type: 'lock-request', id: 4, op: 'check', key: 'k', token: 3, ttlMs: 0, waitMs: 0 },
  { type: 'lock-request', id: 5, op: 'renew', key: 'k', token: 3, ttlMs: 10, waitMs: 0, owner: 'sub:alice' },
  { type: 'quorum-ack', seq: 0 },
  { type: 'quorum-ack', seq: 2 ** 40 },
  { type: 'lock-reply', id: 1, code: '', message: '', token: 17, ttlMs: 5000 },
  { type: 'lock-reply', id: 2, code: 'lock-timeout', message: 'held', token: 0, ttlMs: 0 },
  { type: 'cp-set', id: 5, key: 'stock/1', token: 3, json: '{"n":1}' },
  { type: 'cp-set', id: 6, key: 'stock/1', token: 3, json: '2', ifRev: 0 },
  { type: 'cp-set', id: 7, key: 'stock/1', token: 3, json: '2', ifRev: 41 },
  { type: 'cp-set', id: 8, key: 'stock/1', token: 3, json: '2', owner: 'key:abc' },
  { type: 'cp-set', id: 9, key: 'stock/1', token: 3, json: '2', ifRev: 4, owner: 'conn:x' },
  { type: 'cp-reply', id: 5, code: 'stale-token', message: 'newer wrote' },
  { type: 'client-owners', claims: [] },
  { type: 'client-owners', claims: [{ owner: 'alice', clientIds: [1, 2 ** 32 - 1] }, { owner: 'bob', clientIds: [] }] },
  { type: 'session-open', sid: 1, kind: 'doc', name: 'notes/today', subdoc: '', capabilities: [] },
  { type: 'session-open', sid: 2 ** 32 - 1, kind: 'locks', name: '', subdoc: '', capabilities: [] },
  { type: 'session-open', sid: 7, kind: 'doc', name: 'заметки', subdoc: 'c2f1-guid', capabilities: ['writes:12345', 'owner:x'] },
  { type: 'session-opened', sid: 3, permission: 'read' },
  { type: 'session-opened', sid: 300, permission: 'write' },
  { type: 'session-close', sid: 5, code: 4403, reason: 'forbidden: no access to document "b"' },
  { type: 'session-close', sid: 9, code: 1006, reason: '' },
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

  it('decodes lock-request and cp-set frames of peers that do not know the trailing owner field', () => {
    const without = encodeMessage({ type: 'lock-request', id: 1, op: 'release', key: 'k', token: 2, ttlMs: 0, waitMs: 0 });
    const withOwner = encodeMessage({ type: 'lock-request', id: 1, op: 'release', key: 'k', token: 2, ttlMs: 0, waitMs: 0, owner: 'sub:a' });
    // The owner is appended: an old frame is the new one without its tail.
    expect(withOwner.subarray(0, without.length)).toEqual(without);
    expect(decodeMessage(without)).not.toHaveProperty('owner');
    const cp = encodeMessage({ type: 'cp-set', id: 1, key: 'k', token: 2, json: '1' });
    expect(decodeMessage(cp)).not.toHaveProperty('owner');
  });

  it('types the lock refusals not-owner and limit-exceeded (with the limit the message names)', () => {
    expect(errorFromCode('not-owner', 'the lease on "k" belongs to another identity')).toBeInstanceOf(NotOwnerError);
    const limit = errorFromCode('limit-exceeded', 'max-leases-per-identity (20) reached: release one first');
    expect(limit).toBeInstanceOf(LimitExceededError);
    expect((limit as LimitExceededError).limit).toBe('max-leases-per-identity');
  });

  it('refuses an unknown lock operation', () => {
    const frame = encodeMessage({ type: 'lock-request', id: 1, op: 'acquire', key: 'k', token: 0, ttlMs: 1, waitMs: 0 });
    frame[2] = 1; // id stays 1
    frame[3] = 9; // op index 9 does not exist
    expectProtocolError(frame, 'bad-message');
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
  it('refuses unknown capsync kinds', () => expectProtocolError(new Uint8Array([100, 99]), 'unknown-message-type'));
  it('refuses a truncated varint', () => expectProtocolError(new Uint8Array([0x80]), 'bad-message'));
  it('refuses a varint past 53 bits', () => expectProtocolError(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), 'bad-message'));
  it('refuses a length that runs past the frame', () => expectProtocolError(new Uint8Array([0, 2, 50, 1, 2]), 'bad-message'));
  it('refuses trailing bytes', () => expectProtocolError(new Uint8Array([3, 0]), 'bad-message'));
  it('refuses client-owners with counts past the frame', () => {
    expectProtocolError(new Uint8Array([100, 10, 0xff, 0x7f]), 'bad-message');
    expectProtocolError(new Uint8Array([100, 10, 1, 1, 97, 0xff, 0x7f, 1]), 'bad-message');
  });
  it('refuses a hello with absurd capability counts', () => expectProtocolError(new Uint8Array([100, 0, 1, 0xff, 0x7f]), 'bad-message'));
  it('refuses a session-open with an unknown kind or absurd capability counts', () => {
    expectProtocolError(new Uint8Array([100, 11, 1, 2, 0, 0, 0]), 'bad-message');
    expectProtocolError(new Uint8Array([100, 11, 1, 0, 0, 0, 65]), 'bad-message');
    expectProtocolError(new Uint8Array([100, 11, 1, 0, 0, 0]), 'bad-message'); // truncated: no count
  });
  it('refuses a session-opened with an unknown permission', () => expectProtocolError(new Uint8Array([100, 12, 1, 2]), 'bad-message'));
  it('refuses a session-close whose code is not a close code', () => {
    expectProtocolError(new Uint8Array([100, 13, 1, 0, 0]), 'bad-message');
    expectProtocolError(encodeMessage({ type: 'session-close', sid: 1, code: 5000, reason: '' }), 'bad-message');
  });
});

describe('encodeMessage: messages that carry a payload', () => {
  it('writes exactly what lib0 would, at every length-varint size', () => {
    for (const length of [0, 1, 127, 128, 16_383, 16_384, 2_097_152]) {
      const payload = new Uint8Array(length);
      for (let i = 0; i < length; i += 997) payload[i] = i % 251;
      for (const [msg, type, kind] of [
        [{ type: 'sync-step-2', update: payload }, 0, 1],
        [{ type: 'update', update: payload }, 0, 2],
        [{ type: 'awareness', update: payload }, 1, -1],
      ] as const) {
        const e = encoding.createEncoder();
        encoding.writeVarUint(e, type);
        if (kind >= 0) encoding.writeVarUint(e, kind);
        encoding.writeVarUint8Array(e, payload);
        const got = encodeMessage(msg);
        expect(Buffer.from(got).equals(Buffer.from(encoding.toUint8Array(e))), `${msg.type} of ${length} bytes`).toBe(true);
        const back = decodeMessage(got) as { type: string; update: Uint8Array };
        expect(back.type).toBe(msg.type);
        expect(Buffer.from(back.update).equals(Buffer.from(payload))).toBe(true);
      }
    }
  });
});
