import * as jose from 'jose';
import * as encoding from 'lib0/encoding';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { CloseCode, MAX_DOC_NAME_BYTES, decodeMessage, encodeMessage, errorCodeFromReason, verifiedSnapshot, type ErrorCode } from '@capsync/core';
import { closeForRawPath } from '../support/bad-request-path.js';
import { ProtocolClient, type CloseInfo } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { waitForEvent, withTimeout } from '../support/wait.js';

/**
 * DESIGN.md "Failure and bad input": every bad input closes that one connection with a named
 * code and an "<error-code>: <detail>" reason, changes no stored data, and leaves every other
 * client served. Each case runs against a relay where two healthy clients already share a
 * seeded document, and checks all three halves of that promise.
 */

const SECRET = 'bad-input-test-secret';
const MAX_MESSAGE_BYTES = 64 * 1024;
const DOC = 'shared';

type CloseName = keyof typeof CloseCode;

function sign(opts: { exp?: number | string; secret?: string; docs?: Record<string, string> } = {}): Promise<string> {
  return new jose.SignJWT({ docs: opts.docs ?? { '*': 'write' } })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime(opts.exp ?? '1h')
    .sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

/** A frame built by hand from varuints and raw byte runs, for inputs encodeMessage cannot make. */
function frame(...parts: (number | Uint8Array | string)[]): Uint8Array {
  const e = encoding.createEncoder();
  for (const p of parts) {
    if (typeof p === 'number') encoding.writeVarUint(e, p);
    else if (typeof p === 'string') encoding.writeVarString(e, p);
    else encoding.writeUint8Array(e, p);
  }
  return encoding.toUint8Array(e);
}

const bytes = (...b: number[]) => Uint8Array.from(b);

/** A real Yjs update (text and a nested map value), 66 bytes; every prefix of it fails to decode. */
function realUpdate(): Uint8Array {
  const d = new Y.Doc();
  d.clientID = 123_456_789; // fixed, so the update's length (and each truncation) is the same every run
  d.getText('t').insert(0, 'a real update with some text');
  d.getMap('m').set('k', { nested: [1, 2, 3] });
  return Y.encodeStateAsUpdate(d);
}

/** An awareness update in y-protocols' layout: [n][clientID clock varString(json)]... */
function awarenessUpdate(...entries: [clientID: number, clock: number, json: string][]): Uint8Array {
  return frame(entries.length, ...entries.flatMap(([id, clock, json]) => [id, clock, json]));
}

/** Correct framing around a bad payload, so the payload reaches the Yjs or awareness decoder. */
const syncUpdate = (payload: Uint8Array) => encodeMessage({ type: 'update', update: payload });
const syncStep2 = (payload: Uint8Array) => encodeMessage({ type: 'sync-step-2', update: payload });
const awareness = (payload: Uint8Array) => encodeMessage({ type: 'awareness', update: payload });

/**
 * A forged update: `client` inserts `text` after content of a `ghost` client the relay has never
 * seen, so Yjs holds it back as pending (missing dependency). With `client` set to another
 * user's clientID it reuses that user's struct ids for different content.
 */
function orphanUpdate(client: number, ghost: number, text: string): Uint8Array {
  const g = new Y.Doc();
  g.clientID = ghost;
  g.getText('t').insert(0, 'ghost text');
  const m = new Y.Doc();
  m.clientID = client;
  Y.applyUpdate(m, Y.encodeStateAsUpdate(g));
  m.getText('t').insert(g.getText('t').length, text);
  return Y.encodeStateAsUpdate(m, Y.encodeStateVector(g));
}

interface FrameCase {
  input: string;
  frame: Uint8Array | string;
  close: CloseName;
  error: ErrorCode;
}

const frameCases: FrameCase[] = [
  { input: 'a text frame', frame: 'hello relay', close: 'UnsupportedData', error: 'text-frame' },
  { input: 'a text frame holding a valid binary message', frame: String.fromCharCode(3), close: 'UnsupportedData', error: 'text-frame' },
  { input: 'an empty frame', frame: new Uint8Array(0), close: 'BadMessage', error: 'bad-message' },

  { input: 'unknown message type 4', frame: bytes(4), close: 'BadMessage', error: 'unknown-message-type' },
  { input: 'unknown message type 99', frame: bytes(99, 0), close: 'BadMessage', error: 'unknown-message-type' },
  { input: 'a multi-byte unknown message type (2^40)', frame: frame(2 ** 40), close: 'BadMessage', error: 'unknown-message-type' },
  { input: 'an unknown sync message kind', frame: frame(0, 3, 0), close: 'BadMessage', error: 'unknown-message-type' },
  { input: 'an unknown auth message kind', frame: frame(2, 1, 'x'), close: 'BadMessage', error: 'unknown-message-type' },
  { input: 'an unknown capsync message kind', frame: frame(100, 127), close: 'BadMessage', error: 'unknown-message-type' },

  { input: 'a truncated message-type varint', frame: bytes(0x80), close: 'BadMessage', error: 'bad-message' },
  { input: 'a truncated sync-kind varint', frame: bytes(0, 0xff), close: 'BadMessage', error: 'bad-message' },
  { input: 'a truncated payload-length varint', frame: bytes(0, 2, 0x80, 0x80), close: 'BadMessage', error: 'bad-message' },
  { input: 'a truncated hello version varint', frame: bytes(100, 0, 0x81), close: 'BadMessage', error: 'bad-message' },
  { input: 'a payload length past the end of the frame', frame: bytes(0, 2, 10, 0, 0), close: 'BadMessage', error: 'bad-message' },
  { input: 'trailing bytes after a message', frame: bytes(3, 0), close: 'BadMessage', error: 'bad-message' },
  { input: 'a hello cut inside its capability list', frame: frame(100, 0, 1, 2, 'ack').subarray(0, 6), close: 'BadMessage', error: 'bad-message' },
  { input: 'a hello listing 65 capabilities', frame: frame(100, 0, 1, 65), close: 'BadMessage', error: 'bad-message' },
  { input: 'a sync step 1 whose state vector does not decode', frame: frame(0, 0, 1, 5), close: 'BadMessage', error: 'bad-message' },

  { input: 'a garbage Yjs update', frame: syncUpdate(new TextEncoder().encode('this is not a yjs update')), close: 'InvalidUpdate', error: 'invalid-update' },
  { input: 'a Yjs update with an out-of-range varint', frame: syncUpdate(bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)), close: 'InvalidUpdate', error: 'invalid-update' },
  { input: 'a truncated Yjs update', frame: syncUpdate(realUpdate().subarray(0, 40)), close: 'InvalidUpdate', error: 'invalid-update' },
  { input: 'a Yjs update missing its last byte', frame: syncUpdate(realUpdate().subarray(0, realUpdate().length - 1)), close: 'InvalidUpdate', error: 'invalid-update' },
  { input: 'a garbage Yjs update as sync step 2', frame: syncStep2(bytes(1, 1, 0xde, 0xad, 0xbe, 0xef)), close: 'InvalidUpdate', error: 'invalid-update' },

  { input: 'a garbage awareness update', frame: awareness(new TextEncoder().encode('not awareness')), close: 'InvalidUpdate', error: 'invalid-awareness' },
  { input: 'an awareness update with invalid JSON state', frame: awareness(awarenessUpdate([4242, 1, '{"name": oops'])), close: 'InvalidUpdate', error: 'invalid-awareness' },
  { input: 'a truncated awareness update', frame: awareness(awarenessUpdate([4242, 1, '{"name":"mallory"}']).subarray(0, 10)), close: 'InvalidUpdate', error: 'invalid-awareness' },
  { input: 'an awareness update claiming more entries than it has', frame: awareness(frame(3, 4242, 1, '{}')), close: 'InvalidUpdate', error: 'invalid-awareness' },
  { input: 'an awareness update with trailing bytes', frame: awareness(frame(awarenessUpdate([4242, 1, 'null']), 7)), close: 'InvalidUpdate', error: 'invalid-awareness' },

  { input: 'a relay-only ack message', frame: encodeMessage({ type: 'ack', seq: 1, stateVector: bytes(0) }), close: 'BadMessage', error: 'unknown-message-type' },
  { input: 'a relay-only error message', frame: encodeMessage({ type: 'error', code: 'internal', message: 'spoofed', seq: 0 }), close: 'BadMessage', error: 'unknown-message-type' },
  { input: 'a relay-only auth (permission-denied) message', frame: encodeMessage({ type: 'auth-denied', reason: 'spoofed' }), close: 'BadMessage', error: 'unknown-message-type' },

  { input: `a frame one byte over maxMessageBytes (${MAX_MESSAGE_BYTES})`, frame: new Uint8Array(MAX_MESSAGE_BYTES + 1), close: 'MessageTooBig', error: 'message-too-large' },
  { input: 'a frame of 1 MiB', frame: new Uint8Array(1024 * 1024).fill(0xab), close: 'MessageTooBig', error: 'message-too-large' },
];

describe('relay refuses bad input', () => {
  let relay: TestRelay;
  let goodToken: string;
  const clients: ProtocolClient[] = [];
  /** The two healthy clients on DOC, connected and synced before the bad input. */
  let alice: ProtocolClient;
  let bob: ProtocolClient;

  const urlFor = (doc: string, token: string | null = goodToken) =>
    token === null ? relay.docUrl(doc) : `${relay.docUrl(doc)}?token=${encodeURIComponent(token)}`;
  const connect = async (url: string, synced = true) => {
    const c = synced ? await ProtocolClient.synced(url) : await ProtocolClient.connect(url);
    clients.push(c);
    return c;
  };

  /** Everything storage holds for `doc`, as hex, so a failing comparison shows the difference. */
  const stored = async (doc: string) => {
    const s = await relay.relay.store.load(doc);
    return { head: s.head, updates: s.updates.map((u) => Buffer.from(u).toString('hex')) };
  };

  /** Waits until every update the relay accepted for `doc` has been committed (or failed). */
  const settled = async (doc: string) => {
    await (await relay.relay.registry.peek(doc))?.whenPersisted();
  };

  let storedBefore: Awaited<ReturnType<typeof stored>>;
  let docsLoadedBefore: number;

  beforeEach(async () => {
    // Awareness states up to the frame limit: the frame-size tests below pad awareness updates.
    relay = await startRelay({ authSecret: SECRET, maxMessageBytes: MAX_MESSAGE_BYTES, maxAwarenessStateBytes: MAX_MESSAGE_BYTES });
    goodToken = await sign();
    alice = await connect(urlFor(DOC));
    bob = await connect(urlFor(DOC));
    await alice.waitForAck(alice.type('seeded by alice; '));
    await bob.waitForText('seeded by alice; ');
    await settled(DOC);
    storedBefore = await stored(DOC);
    docsLoadedBefore = relay.relay.registry.size;
    expect(storedBefore.updates.length).toBeGreaterThan(0);
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await relay.dispose();
  });

  /** Soft, so a wrong close still goes on to check the other clients and storage. */
  function expectClosedWith(info: CloseInfo, close: CloseName, error: ErrorCode): void {
    expect.soft({ code: info.code, error: errorCodeFromReason(info.reason) }, `close reason was "${info.reason}"`).toEqual({
      code: CloseCode[close],
      error,
    });
  }

  /** The other half of the contract: storage untouched, both healthy clients still connected and syncing. */
  async function expectOthersUnharmed(): Promise<void> {
    await settled(DOC);
    expect(await stored(DOC)).toEqual(storedBefore);
    expect(alice.closeInfo).toBeNull();
    expect(bob.closeInfo).toBeNull();
    const seq = alice.type('edit after bad input');
    await alice.waitForAck(seq);
    await bob.waitForText('seeded by alice; edit after bad input');
    const seqB = bob.type('!');
    await alice.waitForText('seeded by alice; edit after bad input!');
    await bob.waitForAck(seqB);
  }

  describe('malformed frames close only the sender', () => {
    it.each(frameCases)('closes a connection that sends $input with $close ($error)', async ({ frame: bad, close, error }) => {
      const mallory = await connect(urlFor(DOC));
      mallory.sendRaw(bad);
      expectClosedWith(await mallory.waitClosed(), close, error);
      await expectOthersUnharmed();
    });

    it('accepts a frame of exactly maxMessageBytes', async () => {
      // An awareness update padded so the whole frame is exactly at the limit.
      const pad = (n: number) => awareness(awarenessUpdate([4242, 1, JSON.stringify({ pad: 'x'.repeat(n) })]));
      let n = MAX_MESSAGE_BYTES - 32;
      n += MAX_MESSAGE_BYTES - pad(n).length;
      const atLimit = pad(n);
      expect(atLimit.length).toBe(MAX_MESSAGE_BYTES);
      const carol = await connect(urlFor(DOC));
      carol.sendRaw(atLimit);
      await bob.waitFor(() => bob.received.some((m) => m.type === 'awareness' && m.update.length > MAX_MESSAGE_BYTES / 2) || undefined, 'the large awareness update at bob');
      expect(carol.closeInfo).toBeNull();
    });
  });

  describe('regression: forged updates that reuse another client\'s struct ids', () => {
    // Found by the fuzz test. Yjs parks a struct whose origin is unknown as pending even when
    // its id (client, clock) is already integrated, and encodeStateAsUpdate merges pending
    // structs into the state: the forged struct then shadows the real one, and a document
    // built from that encoding parks all of the real client's content as pending. Newcomers
    // (sync step 2) and every snapshot (compaction, load, recovery) lose that text.
    it('keeps the victim\'s text for newcomers and in the snapshot compaction would store', async () => {
      const mallory = await connect(urlFor(DOC));
      // The pending struct's client must sort above the victim's for the merge to go wrong.
      mallory.sendRaw(encodeMessage({ type: 'update', update: orphanUpdate(alice.doc.clientID + 1, 900_001, 'pending') }));
      mallory.sendRaw(encodeMessage({ type: 'update', update: orphanUpdate(alice.doc.clientID, 900_002, 'forged') }));
      // Whether the relay refuses these (closing mallory) or keeps them, the sender gets an answer.
      await Promise.race([mallory.waitForAck(mallory.seq), mallory.waitClosed()]);
      await settled(DOC);

      const newcomer = await connect(urlFor(DOC));
      expect.soft(newcomer.text, 'text a newcomer syncs').toBe('seeded by alice; ');
      // What compaction and the merge on load would store (RelayDoc uses verifiedSnapshot).
      const relayDoc = (await relay.relay.registry.peek(DOC))!.doc;
      const fromSnapshot = new Y.Doc();
      Y.applyUpdate(fromSnapshot, verifiedSnapshot(relayDoc)!.update);
      expect.soft(fromSnapshot.getText('t').toString(), 'text in a snapshot of the relay document').toBe('seeded by alice; ');
      expect(alice.closeInfo).toBeNull();
      expect(bob.closeInfo).toBeNull();
    });
  });

  describe('bad credentials are refused at connect', () => {
    const authCases: { input: string; token: () => Promise<string | null>; close: CloseName; error: ErrorCode }[] = [
      { input: 'no token', token: async () => null, close: 'Unauthorized', error: 'unauthorized' },
      { input: 'a token that is not a JWT', token: async () => 'not-a-jwt', close: 'Unauthorized', error: 'unauthorized' },
      { input: 'a token signed with another secret', token: () => sign({ secret: 'some-other-secret' }), close: 'Unauthorized', error: 'unauthorized' },
      { input: 'an expired token', token: () => sign({ exp: Math.floor(Date.now() / 1000) - 60 }), close: 'Unauthorized', error: 'unauthorized' },
      {
        input: 'an unsigned (alg "none") token',
        token: async () => new jose.UnsecuredJWT({ docs: { '*': 'write' } }).setExpirationTime('1h').encode(),
        close: 'Unauthorized',
        error: 'unauthorized',
      },
      {
        input: 'a token whose payload was swapped after signing',
        token: async () => {
          const [header, , signature] = (await sign({ docs: { 'someone-else': 'write' } })).split('.');
          const payload = Buffer.from(JSON.stringify({ docs: { '*': 'write' }, exp: Math.floor(Date.now() / 1000) + 3600 })).toString('base64url');
          return `${header}.${payload}.${signature}`;
        },
        close: 'Unauthorized',
        error: 'unauthorized',
      },
      { input: 'a valid token without access to the document', token: () => sign({ docs: { 'someone-else': 'write' } }), close: 'Forbidden', error: 'forbidden' },
    ];

    it.each(authCases)('closes a connection with $input with $close ($error)', async ({ token, close, error }) => {
      const mallory = await connect(urlFor(DOC, await token()), false);
      expectClosedWith(await mallory.waitClosed(), close, error);
      expect(mallory.received).toEqual([]);
      expect(relay.relay.registry.size).toBe(docsLoadedBefore);
      await expectOthersUnharmed();
    });

    it('says why an expired token was refused', async () => {
      const mallory = await connect(urlFor(DOC, await sign({ exp: Math.floor(Date.now() / 1000) - 60 })), false);
      expect((await mallory.waitClosed()).reason).toBe('unauthorized: token expired');
    });

    it('closes a connection when its token expires while connected', async () => {
      // JWT `exp` has one-second resolution: this token runs out within 1-2 s.
      const expiresAt = Math.floor(Date.now() / 1000) + 2;
      const shortLived = await connect(urlFor(DOC, await sign({ exp: expiresAt })));
      const info = await shortLived.waitClosed(10_000);
      expectClosedWith(info, 'Unauthorized', 'unauthorized');
      expect(Date.now()).toBeGreaterThanOrEqual(expiresAt * 1000 - 50);
      await expectOthersUnharmed();
    });
  });

  describe('bad document names are refused at connect', () => {
    // Sent verbatim (see closeForRawPath): a WebSocket client would normalize most of these away.
    const nameCases: { input: string; path: string }[] = [
      { input: 'an empty name', path: '/' },
      { input: `a name of ${MAX_DOC_NAME_BYTES + 1} ASCII bytes`, path: '/' + 'a'.repeat(MAX_DOC_NAME_BYTES + 1) },
      { input: `a name of 257 characters but ${257 * 2} UTF-8 bytes`, path: '/' + '%C3%A9'.repeat(257) },
      { input: 'a ".." name', path: '/..' },
      { input: 'a percent-encoded ".." name (%2e%2e)', path: '/%2e%2e' },
      { input: 'a mixed-case encoded ".." (.%2E)', path: '/.%2E' },
      { input: 'a ".." segment inside the name', path: '/notes/../secrets' },
      { input: 'an encoded "../" escape (%2e%2e%2f)', path: '/%2e%2e%2fetc%2fpasswd' },
      { input: 'a "." segment', path: '/a/./b' },
      { input: 'a raw backslash', path: '/a\\b' },
      { input: 'an encoded backslash escape (..%5c)', path: '/..%5c..%5cwindows' },
      { input: 'an empty segment (a//b)', path: '/a//b' },
      { input: 'an encoded empty segment (a%2F%2Fb)', path: '/a%2F%2Fb' },
      { input: 'a leading slash', path: '//absolute' },
      { input: 'a trailing slash', path: '/dir/' },
      { input: 'a NUL character', path: '/a%00b' },
      { input: 'a malformed percent-escape', path: '/a%zz' },
    ];

    it.each(nameCases)('closes a connection to $input with InvalidDocName', async ({ path }) => {
      const info = await closeForRawPath(relay.httpUrl, `${path}?token=${encodeURIComponent(goodToken)}`);
      expectClosedWith(info, 'InvalidDocName', 'invalid-doc-name');
      expect(relay.relay.registry.size).toBe(docsLoadedBefore);
      await expectOthersUnharmed();
    });

    it(`accepts a name of exactly ${MAX_DOC_NAME_BYTES} UTF-8 bytes`, async () => {
      const name = 'é'.repeat(MAX_DOC_NAME_BYTES / 2);
      const carol = await connect(urlFor(encodeURIComponent(name)));
      await carol.waitForAck(carol.type('long name ok'));
      expect((await relay.relay.store.load(name)).updates.length).toBe(1);
    });
  });
});

describe('regression: forged updates that make a document unloadable', () => {
  // Found by the fuzz test (SEED=326893170) and minimized: eight updates of one client, out of
  // order, two of them claiming the same id (clock 2) and one with a parent that does not
  // exist. Each decodes and applies, and a load that replays them works; but
  // Y.encodeStateAsUpdate of the result cannot be applied to an empty Y.Doc (TypeError in
  // Yjs' Item.getMissing). The relay stores exactly that encoding as the snapshot when it
  // merges the log on load (and when it compacts), so the load after that fails.
  const FORGED = [
  'AQSnkbGlBRKHp5GxpQUDAwFwBwCnkbGlBRIGBACnkbGlBRMEYsOpCigAp5GxpQUSBWMAYXNzAXcDYX8iAA==',
  'AQSnkbGlBRqHp5GxpQUSAwFwBwCnkbGlBRoGBACnkbGlBXYICsOpYmHkuK0oAKeRsaUFGgVjbGFzcwF3AsOpAA==',
  'AQSnkbGlBQhHp5GxpQUDAwFwBwCnkbGlBQgGBACnkbGlBQkHImJhXCBhYigAp5GxpQUIBWNsYXNzAXcSICLkuK1hevCfmIDDqWFiw6l6AA==',
  'AQSnkbGlBQMHAQF4AwFwBwCnkbGlBQMGBACnkbGlBQQE5LitYSgAp5GxpQUDBWNsYXNzAXcIeuS4rWIiCiIA',
  'AQGnkbGlBQIEAAF3AWEA',
  'AQGnkbGlBRiIp5GxpQUBAnl2AgFrdQJ3DuS4rcOpYWJc8J+YgHpieAFzdwtiXOS4rcOpw6nDqQA=',
  'AQGnkbGlBQAIAQFhAncBIHUCeXYCAWt0Du+Iyqt41Xn2vj0+hKOUAXN3A2EiIgA=',
  'AQGnkbGlBQIEAQF0AWEA',
  ].map((b64) => new Uint8Array(Buffer.from(b64, 'base64')));

  let relay: TestRelay;
  afterEach(async () => relay.dispose());

  // Checks at once too: the relay may have unloaded the document before we start waiting.
  const unloaded = () =>
    waitForEvent(relay.relay.registry, 'unloaded', () => relay.relay.registry.size === 0 || undefined, 'the document to unload');

  /**
   * Opens `doc` with a bare socket, asks for its whole state (sync step 1), disconnects and
   * waits until the relay unloaded it (idleTimeoutMs 0). A bare socket, because a Y.Doc fed the relay's
   * answer here throws inside the WebSocket listener.
   */
  async function loadOnce(doc: string): Promise<{ state: Uint8Array | null; close: CloseInfo | null }> {
    const ws = new WebSocket(relay.docUrl(doc));
    await withTimeout(once(ws, 'open'), 10_000, 'connection');
    const answer = new Promise<{ state: Uint8Array | null; close: CloseInfo | null }>((resolve) => {
      ws.on('message', (data: Buffer) => {
        const msg = decodeMessage(new Uint8Array(data));
        if (msg.type === 'sync-step-2') resolve({ state: msg.update, close: null });
      });
      ws.on('close', (code, reason) => resolve({ state: null, close: { code, reason: reason.toString() } }));
    });
    ws.send(encodeMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) }));
    const result = await withTimeout(answer, 10_000, `the state of ${doc}`);
    if (result.close) return result; // refused: the document never loaded, so it does not unload
    const gone = unloaded();
    ws.close();
    await gone;
    return result;
  }

  it('serves the document with its acknowledged text on the next two loads', async () => {
    relay = await startRelay({ idleTimeoutMs: 0 });
    const alice = await ProtocolClient.synced(relay.docUrl('victim'));
    await alice.waitForAck(alice.type('alice text'));
    await alice.close();
    const mallory = await ProtocolClient.synced(relay.docUrl('victim'));
    for (const update of FORGED) mallory.sendRaw(encodeMessage({ type: 'update', update }));
    await Promise.race([mallory.waitForAck(1 + FORGED.length), mallory.waitClosed()]);
    const gone = unloaded();
    await mallory.close();
    await gone;

    for (const load of [1, 2]) {
      const { state, close } = await loadOnce('victim');
      expect.soft(close, `load ${load}: the relay closed the connection`).toBeNull();
      if (!state) continue;
      const doc = new Y.Doc();
      let applied: unknown = null;
      try {
        Y.applyUpdate(doc, state);
      } catch (err) {
        applied = err;
      }
      expect.soft(applied, `load ${load}: the state the relay serves does not apply to an empty Y.Doc`).toBeNull();
      expect.soft(doc.getText('t').toString(), `load ${load}`).toContain('alice text');
    }
  });
});
