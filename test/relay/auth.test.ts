import * as jose from 'jose';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import * as Y from 'yjs';
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate } from 'y-protocols/awareness';
import { CloseCode } from '@capsync/core';
import type { RelaySocket } from '@capsync/server';
import { ProtocolClient, type ProtocolClientOptions } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { signToken } from '../support/tokens.js';

const SECRET = 'integration-test-secret-0123456789';
const nowSeconds = () => Math.floor(Date.now() / 1000);

type Docs = Record<string, 'read' | 'write'>;

async function sign(docs: Docs | undefined, claims: jose.JWTPayload = {}, secret = SECRET): Promise<string> {
  // Tokens must expire (the relay refuses them otherwise): in ten minutes unless `claims` say.
  return signToken(secret, { sub: 'tester', exp: nowSeconds() + 600, ...claims, ...(docs ? { docs } : {}) });
}

/** The text of "t" in the relay's stored data for `doc`, read from its store. */
async function storedText(relay: TestRelay, doc: string): Promise<string> {
  const stored = await relay.relay.store.load(doc);
  const copy = new Y.Doc();
  for (const u of stored.updates) Y.applyUpdate(copy, u);
  return copy.getText('t').toString();
}

describe('relay auth over WebSocket', () => {
  let relay: TestRelay;
  const clients: ProtocolClient[] = [];

  const track = (c: ProtocolClient) => (clients.push(c), c);
  const connect = async (doc: string, token: string, opts: ProtocolClientOptions = {}) =>
    track(await ProtocolClient.synced(`${relay.docUrl(doc)}?token=${token}`, opts));
  /** Connects with `url`/`opts` and returns how the relay closed the connection. */
  const refusal = async (url: string, opts: ProtocolClientOptions = {}) => {
    const c = track(await ProtocolClient.connect(url, opts));
    const info = await c.waitClosed();
    // A refused connection is closed before it is served anything of the document.
    expect(c.received.filter((m) => m.type === 'sync-step-1' || m.type === 'sync-step-2' || m.type === 'update')).toEqual([]);
    return info;
  };

  beforeEach(async () => {
    relay = await startRelay({ authSecret: SECRET });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await relay.dispose();
  });

  it('lets a write token sync and acknowledges its updates', async () => {
    const writer = await connect('w', await sign({ w: 'write' }));
    const seq = writer.type('written');
    await writer.waitForAck(seq);
    expect(writer.errors).toEqual([]);
    expect(await storedText(relay, 'w')).toBe('written');
  });

  describe('read-only tokens', () => {
    it('sync down existing content and live edits of a writer', async () => {
      const writer = await connect('doc', await sign({ doc: 'write' }));
      await writer.waitForAck(writer.type('existing'));
      const reader = await connect('doc', await sign({ doc: 'read' }));
      expect(reader.text).toBe('existing');
      writer.type(' + live');
      await reader.waitForText('existing + live');
    });

    it('may publish awareness, which other clients receive', async () => {
      const writer = await connect('doc', await sign({ doc: 'write' }));
      const reader = await connect('doc', await sign({ doc: 'read' }));
      const readerAwareness = new Awareness(reader.doc);
      readerAwareness.setLocalState({ user: 'reader' });
      reader.sendMessage({ type: 'awareness', update: encodeAwarenessUpdate(readerAwareness, [reader.doc.clientID]) });

      const seenByWriter = new Awareness(new Y.Doc());
      await writer.waitFor(() => {
        for (const m of writer.received) if (m.type === 'awareness') applyAwarenessUpdate(seenByWriter, m.update, 'relay');
        return seenByWriter.getStates().get(reader.doc.clientID)?.['user'] === 'reader' || undefined;
      }, "the reader's awareness at the writer");
      expect(reader.closeInfo).toBeNull();
      expect(reader.errors).toEqual([]);
      readerAwareness.destroy();
      seenByWriter.destroy();
    });

    it('have their updates refused with a typed error and never applied', async () => {
      const writer = await connect('doc', await sign({ doc: 'write' }));
      await writer.waitForAck(writer.type('base'));
      const reader = await connect('doc', await sign({ doc: 'read' }));

      const first = reader.type(' EVIL');
      const second = reader.type(' MORE');
      await reader.waitFor(() => reader.errors.length === 2 || undefined, 'two refusals');
      expect(reader.errors.map((e) => [e.code, e.seq])).toEqual([
        ['read-only', first],
        ['read-only', second],
      ]);
      expect(reader.errors[0]!.message).toMatch(/read-only/);
      // Refusal does not end the connection: live edits still arrive afterwards.
      await writer.waitForAck(writer.type(' after'));
      await reader.waitFor(() => reader.text.includes(' after') || undefined, 'live edit after the refusal');
      expect(reader.closeInfo).toBeNull();

      const fresh = await connect('doc', await sign({ doc: 'read' }));
      for (const text of [writer.text, fresh.text, await storedText(relay, 'doc')]) {
        expect(text).toBe('base after');
      }
      expect(writer.received.some((m) => m.type === 'error')).toBe(false);
    });

    it('have offline state in their sync step 2 refused too', async () => {
      const reader = track(await ProtocolClient.connect(`${relay.docUrl('doc')}?token=${await sign({ doc: 'read' })}`, { answerSync: false }));
      const refused = reader.type('typed offline');
      expect(refused).toBe(1);
      reader.sendMessage({ type: 'sync-step-2', update: Y.encodeStateAsUpdate(reader.doc) });
      await reader.waitFor(() => reader.errors.length === 2 || undefined, 'both refusals');
      expect(reader.errors.map((e) => [e.code, e.seq])).toEqual([
        ['read-only', 1],
        ['read-only', 2],
      ]);
      expect(await storedText(relay, 'doc')).toBe('');
    });

    it('tell a stock client once with a y-protocols auth-denied message', async () => {
      const writer = await connect('doc', await sign({ doc: 'write' }));
      await writer.waitForAck(writer.type('ok'));
      const stock = await connect('doc', await sign({ doc: 'read' }), { hello: false });
      stock.type(' nope');
      stock.type(' still nope');
      // Ordering point: the relay answers this step 1 only after handling both updates.
      stock.sendMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(stock.doc) });
      await stock.waitFor(() => stock.received.filter((m) => m.type === 'sync-step-2').length === 2 || undefined, 'second sync answer');
      const denied = stock.received.filter((m) => m.type === 'auth-denied');
      expect(denied).toHaveLength(1);
      expect(denied[0]).toMatchObject({ reason: expect.stringMatching(/read-only/) });
      expect(stock.received.some((m) => m.type === 'error' || m.type === 'ack' || m.type === 'hello')).toBe(false);
      expect(stock.closeInfo).toBeNull();
      expect(await storedText(relay, 'doc')).toBe('ok');
      expect(writer.text).toBe('ok');
    });
  });

  describe('refused connections', () => {
    it('closes 4401 for an expired token, saying it expired', async () => {
      const token = await sign({ doc: 'write' }, { exp: nowSeconds() - 60 });
      const info = await refusal(`${relay.docUrl('doc')}?token=${token}`);
      expect(info.code).toBe(CloseCode.Unauthorized);
      expect(info.reason).toMatch(/^unauthorized: .*expired/);
    });

    it('closes 4401 for a missing token', async () => {
      const info = await refusal(relay.docUrl('doc'));
      expect(info).toEqual({ code: 4401, reason: expect.stringMatching(/^unauthorized: /) });
    });

    it('closes 4401 for a token signed with another secret', async () => {
      const token = await sign({ doc: 'write' }, {}, 'not-the-relay-secret-at-all');
      const info = await refusal(`${relay.docUrl('doc')}?token=${token}`);
      expect(info).toEqual({ code: 4401, reason: expect.stringMatching(/^unauthorized: invalid token/) });
    });

    it.each([
      ['garbage', 'not-a-token'],
      ['three garbage segments', 'aaa.bbb.ccc'],
      ['an unsigned token', new jose.UnsecuredJWT({ docs: { doc: 'write' } }).encode()],
    ])('closes 4401 for a malformed token (%s)', async (_what, token) => {
      const info = await refusal(`${relay.docUrl('doc')}?token=${token}`);
      expect(info).toEqual({ code: 4401, reason: expect.stringMatching(/^unauthorized: /) });
    });

    it('closes 4403 for a valid token without access to the document', async () => {
      const writer = await connect('secret', await sign({ secret: 'write' }));
      await writer.waitForAck(writer.type('classified'));
      const info = await refusal(`${relay.docUrl('secret')}?token=${await sign({ public: 'write', 'team/*': 'read' })}`);
      expect(info.code).toBe(CloseCode.Forbidden);
      expect(info.reason).toMatch(/^forbidden: .*secret/);
    });

    it('never puts the token in the close reason', async () => {
      const token = await sign({ other: 'write' });
      const info = await refusal(`${relay.docUrl('doc')}?token=${token}`);
      expect(info.reason).not.toContain(token);
    });
  });

  describe('token transports', () => {
    it('accepts the token as a query parameter', async () => {
      const c = await connect('q', await sign({ q: 'write' }));
      await c.waitForAck(c.type('via query'));
    });

    it('accepts the token as a capsync.jwt sub-protocol and answers with capsync', async () => {
      const token = await sign({ p: 'write' });
      const c = track(await ProtocolClient.synced(relay.docUrl('p'), { protocols: ['capsync', `capsync.jwt.${token}`] }));
      expect(c.ws.protocol).toBe('capsync');
      await c.waitForAck(c.type('via sub-protocol'));
    });

    it('accepts the token in an Authorization Bearer header', async () => {
      const token = await sign({ h: 'write' });
      const c = track(await ProtocolClient.synced(relay.docUrl('h'), { headers: { Authorization: `Bearer ${token}` } }));
      await c.waitForAck(c.type('via header'));
    });

    it('applies prefix patterns to documents with slashes in their names', async () => {
      const token = await sign({ 'team/*': 'write', 'team/handbook': 'read' });
      const notes = await connect('team/notes', token);
      await notes.waitForAck(notes.type('ok'));
      const handbook = await connect('team/handbook', token);
      handbook.type('refused');
      await handbook.waitFor(() => handbook.errors[0]?.code === 'read-only' || undefined, 'read-only refusal');
      expect((await refusal(`${relay.docUrl('teamwork')}?token=${token}`)).code).toBe(4403);
    });
  });

  it('closes a connection with 4401 when its token expires', async () => {
    // `exp` is in whole seconds: this one expires 1-2 s from now.
    const exp = nowSeconds() + 2;
    const token = await sign({ doc: 'write' }, { exp });
    const c = await connect('doc', token);
    await c.waitForAck(c.type('before expiry'));
    const info = await c.waitClosed(5_000);
    expect(info).toEqual({ code: CloseCode.Unauthorized, reason: 'unauthorized: token expired' });
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000 - 50);
    // The same token is refused from now on.
    expect((await refusal(`${relay.docUrl('doc')}?token=${token}`)).code).toBe(4401);
    expect(await storedText(relay, 'doc')).toBe('before expiry');
  });
});

describe('relay auth with issuer and audience', () => {
  let relay: TestRelay;
  const clients: ProtocolClient[] = [];

  beforeEach(async () => {
    relay = await startRelay({ authSecret: SECRET, authIssuer: 'https://auth.example', authAudience: 'capsync-relay' });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await relay.dispose();
  });

  const open = async (claims: jose.JWTPayload) => {
    const c = await ProtocolClient.connect(`${relay.docUrl('doc')}?token=${await sign({ doc: 'write' }, claims)}`);
    clients.push(c);
    return c;
  };

  it('accepts a token with the configured issuer and audience', async () => {
    const c = await open({ iss: 'https://auth.example', aud: 'capsync-relay' });
    await c.waitSynced();
    await c.waitForAck(c.type('ok'));
  });

  it.each([
    ['no issuer', { aud: 'capsync-relay' }],
    ['another issuer', { iss: 'https://evil.example', aud: 'capsync-relay' }],
    ['no audience', { iss: 'https://auth.example' }],
    ['another audience', { iss: 'https://auth.example', aud: 'someone-else' }],
  ])('closes 4401 for a token with %s', async (_what, claims) => {
    const c = await open(claims);
    const info = await c.waitClosed();
    expect(info).toEqual({ code: 4401, reason: expect.stringMatching(/^unauthorized: invalid token/) });
  });
});

describe('token expiry beyond the timer range', () => {
  const DAY = 24 * 60 * 60 * 1000;

  // setTimeout cannot wait longer than 2^31-1 ms (24.8 days); the relay caps the expiry timer
  // there, and must not treat the capped timer firing as the token having expired.
  it('regression: keeps a connection whose token is valid for 30 days open after 24.8 days', async () => {
    const relay = await startRelay({ authSecret: SECRET });
    const closes: [number, string][] = [];
    const socket: RelaySocket = {
      send: () => {},
      bufferedAmount: 0,
      close: (code, reason) => void closes.push([code, reason]),
      terminate: () => {},
    };
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    const conn = relay.relay.connect(socket, 'long-lived', { permission: 'write', expiresAt: Date.now() + 30 * DAY });
    try {
      vi.advanceTimersByTime(2 ** 31);
      expect(closes).toEqual([]);
      vi.advanceTimersByTime(6 * DAY);
      expect(closes).toEqual([[CloseCode.Unauthorized, 'unauthorized: token expired']]);
    } finally {
      conn.close();
      relay.relay.disconnected(conn);
      vi.useRealTimers();
      await relay.dispose();
    }
  });
});

describe('open relay (no auth secret)', () => {
  let relay: TestRelay;
  beforeEach(async () => {
    relay = await startRelay();
  });
  afterEach(async () => {
    await relay.dispose();
  });

  it('accepts connections without a token and lets them write', async () => {
    const c = await ProtocolClient.synced(relay.docUrl('anything'));
    await c.waitForAck(c.type('open for all'));
    expect(c.errors).toEqual([]);
    await c.close();
  });

  it('ignores a token it cannot check', async () => {
    const c = await ProtocolClient.synced(`${relay.docUrl('anything')}?token=whatever`);
    await c.waitForAck(c.type('still fine'));
    await c.close();
  });
});
