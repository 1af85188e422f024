import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { CHUNK_BYTES, CloseCode, FLOW_WINDOW_BYTES, MUX_BATCH_CAPABILITY, MUX_CAPABILITY, MUX_FLOW_CAPABILITY, batchedSize, encodeBatch, encodeMessage, encodeMuxFrame, errorCodeFromReason } from '@capsync/core';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient, type MuxDocSession } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { metricValue, waitForMetric, waitForMetricTo } from '../support/relay-observe.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { mintToken } from '../support/tokens.js';

/**
 * Issue 12 Part 2 (P2): the relay's multiplexed endpoint `/.capsync/mux`, at the wire level, against
 * a real relay process. Many documents ride one socket, each a session that behaves as a plain
 * connection of its own (sync, acks, permission); what goes wrong with one session closes that
 * session alone, what breaks the socket's framing closes the socket.
 */

const SECRET = 'mux-test-secret';
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Types `text` and waits for its durable ack. */
async function typed(s: MuxDocSession | ProtocolClient, text: string): Promise<void> {
  await s.waitForAck(s.type(text));
}

describe('multiplexed endpoint: documents over one socket', () => {
  it('syncs many documents over one socket with plain clients of the same documents; sockets and sessions are counted apart', async () => {
    await using relay = await startAttackedRelay();
    const mux = await MuxClient.connect(relay.url);
    expect((await mux.waitHello()).capabilities).toContain(MUX_CAPABILITY);
    const N = 40;
    const sessions = await Promise.all(range(N).map((i) => mux.synced(`doc-${i}`)));
    expect(sessions.map((s) => s.permission)).toEqual(range(N).map(() => 'write'));
    const watched = [0, 13, N - 1];
    const plain = await Promise.all(watched.map((i) => ProtocolClient.synced(`${relay.url}/doc-${i}`)));

    await Promise.all(sessions.map((s, i) => typed(s, `m${i}`)));
    await Promise.all(plain.map((p, k) => p.waitForText(`m${watched[k]}`)));
    await typed(plain[1]!, '+plain');
    await sessions[13]!.waitForText('m13+plain');
    // Every session numbers its own messages: its acks name its own seq.
    expect(sessions.map((s) => s.ackedSeq)).toEqual(sessions.map((s) => s.seq));

    expect(await metricValue(relay.httpUrl, 'capsync_sockets', { endpoint: 'mux' })).toBe(1);
    expect(await metricValue(relay.httpUrl, 'capsync_sockets', { endpoint: 'doc' })).toBe(plain.length);
    expect(await metricValue(relay.httpUrl, 'capsync_connections')).toBe(N + plain.length);
    // No relay hello per session: the socket's was the one.
    expect(sessions.flatMap((s) => s.received).filter((m) => m.type === 'hello')).toEqual([]);

    await mux.close();
    await waitForMetricTo(relay.httpUrl, 'capsync_connections', {}, (v) => v === plain.length, `= ${plain.length}`);
    expect(await metricValue(relay.httpUrl, 'capsync_sockets', { endpoint: 'mux' })).toBe(0);
    await Promise.all(plain.map((p) => p.close()));
  });

  it('500 documents over one socket, edited, converge at a second socket; closing 499 leaves the last one working', async () => {
    await using relay = await startAttackedRelay();
    const N = 500;
    const [one, two] = await Promise.all([MuxClient.connect(relay.url), MuxClient.connect(relay.url)]);
    const mine = await Promise.all(range(N).map((i) => one.synced(`many-${i}`)));
    const theirs = await Promise.all(range(N).map((i) => two.synced(`many-${i}`)));
    mine.forEach((s, i) => s.type(`#${i}`));
    await Promise.all(theirs.map((s, i) => s.waitForText(`#${i}`, 30_000)));
    expect(await metricValue(relay.httpUrl, 'capsync_sockets', { endpoint: 'mux' })).toBe(2);
    expect(await metricValue(relay.httpUrl, 'capsync_connections')).toBe(2 * N);
    await Promise.all(mine.slice(0, N - 1).map((s) => s.close()));
    await waitForMetricTo(relay.httpUrl, 'capsync_connections', {}, (v) => v === N + 1, `= ${N + 1}`);
    const last = mine[N - 1]!;
    await typed(last, ' still here');
    await theirs[N - 1]!.waitForText(`#${N - 1} still here`);
    await Promise.all([one.close(), two.close()]);
  }, 60_000);

  it('durable acks are per session: what a session had acknowledged survives a relay crash', async () => {
    const relay = await RestartableRelay.start();
    try {
      const mux = await MuxClient.connect(relay.url);
      const [a, b] = await Promise.all([mux.synced('durable-a'), mux.synced('durable-b')]);
      for (let i = 0; i < 5; i++) a.type(`a${i};`);
      b.type('b0;');
      await Promise.all([a.waitForAck(a.seq), b.waitForAck(b.seq)]);
      expect([a.ackedSeq, b.ackedSeq]).toEqual([a.seq, b.seq]);
      expect(a.seq).toBeGreaterThan(b.seq);
      await relay.stop('SIGKILL');
      await relay.start();
      const stored = new Y.Doc();
      Y.applyUpdate(stored, await relay.docUpdate('durable-a'));
      expect(stored.getText('t').toString()).toBe('a0;a1;a2;a3;a4;');
      const storedB = new Y.Doc();
      Y.applyUpdate(storedB, await relay.docUpdate('durable-b'));
      expect(storedB.getText('t').toString()).toBe('b0;');
    } finally {
      await relay.dispose();
    }
  });

  it('closing a session releases its document (it unloads when idle); the socket stays open for more', async () => {
    await using relay = await startAttackedRelay(['--idle-timeout-ms', '50']);
    const mux = await MuxClient.connect(relay.url);
    const session = await mux.synced('released');
    await typed(session, 'kept');
    expect(await metricValue(relay.httpUrl, 'capsync_docs_loaded')).toBe(1);
    await session.close();
    await waitForMetricTo(relay.httpUrl, 'capsync_connections', {}, (v) => v === 0, '= 0');
    await waitForMetricTo(relay.httpUrl, 'capsync_docs_loaded', {}, (v) => v === 0, '= 0');
    expect(await metricValue(relay.httpUrl, 'capsync_doc_unloads_total')).toBeGreaterThanOrEqual(1);
    const again = await mux.synced('released');
    expect(again.text).toBe('kept');
    expect(again.sid).toBeGreaterThan(session.sid); // sids are never reused
    await mux.close();
  });
});

describe('multiplexed endpoint: batches of frames', () => {
  it('a batch of opens and syncs is served as its frames alone would be; the relay batches only to a socket that said it takes batches', async () => {
    await using relay = await startAttackedRelay();
    const batching = await MuxClient.connect(relay.url, { capabilities: [MUX_BATCH_CAPABILITY] });
    const plain = await MuxClient.connect(relay.url);
    expect((await batching.waitHello()).capabilities).toContain(MUX_BATCH_CAPABILITY);
    const N = 30;
    // Every open and its sync step 1 in one WebSocket message.
    let opened: MuxDocSession[] = [];
    batching.sendBatched(() => {
      opened = range(N).map((i) => batching.open(`batched-${i}`));
    });
    await Promise.all(opened.map((s) => s.waitSynced()));
    const others = await Promise.all(range(N).map((i) => plain.synced(`batched-${i}`)));
    await Promise.all(opened.map((s, i) => typed(s, `b${i}`)));
    await Promise.all(others.map((s, i) => s.waitForText(`b${i}`)));
    expect(opened.map((s) => s.ackedSeq)).toEqual(opened.map((s) => s.seq));
    // The answers to one batch of opens are many frames of one task: they came batched too.
    expect(batching.batchesReceived).toBeGreaterThan(0);
    expect(plain.batchesReceived).toBe(0);
    await Promise.all([batching.close(), plain.close()]);
  });

  it('a frame of a batch that closes the socket (--max-refused-opens-per-socket) is the last one acted on: a later open loads nothing', async () => {
    await using relay = await startAttackedRelay(['--max-refused-opens-per-socket', '1']);
    const mux = await MuxClient.connect(relay.url, { capabilities: [MUX_BATCH_CAPABILITY] });
    await mux.waitHello();
    const openOf = (sid: number, name: string) => mux.sendControl({ type: 'session-open', sid, kind: 'doc', name, subdoc: '', capabilities: [] });
    // Two refused opens (a reserved name: 4404), the second past the bound; then a good one.
    mux.sendBatched(() => {
      openOf(1, '.capsync/nope-1');
      openOf(3, '.capsync/nope-2');
      openOf(5, 'after-the-close');
    });
    expect((await mux.waitClosed()).code).toBe(CloseCode.LimitExceeded);
    expect(await metricValue(relay.httpUrl, 'capsync_messages_in_total', { type: 'session-open' })).toBe(2);
    expect(await metricValue(relay.httpUrl, 'capsync_docs_loaded')).toBe(0);
    expect(mux.control.filter((m) => m.type === 'session-opened')).toEqual([]);
  });
});

describe('multiplexed endpoint: fairness between sessions', () => {
  it('sends a large document as chunks, and a small document’s update on the same socket overtakes the rest of it', async () => {
    await using relay = await startAttackedRelay();
    // 20 MB of text in two updates (each under --max-message-bytes): the relay's answer to a
    // fresh session is one 20 MB sync step 2, more than the kernel buffers of a loopback socket.
    const writer = await ProtocolClient.synced(`${relay.url}/fair-big`);
    const half = 10 * 1024 * 1024;
    await writer.waitForAck(writer.type('a'.repeat(half)), 60_000);
    await writer.waitForAck(writer.type('b'.repeat(half)), 60_000);
    await writer.close();
    const editor = await ProtocolClient.synced(`${relay.url}/fair-small`);

    const mux = await MuxClient.connect(relay.url);
    await mux.waitHello();
    const small = mux.open('fair-small');
    await small.waitSynced();
    // Stop reading, open the large document, and let the small one change meanwhile: its update
    // is queued at the relay while most of the large answer still waits for its turn.
    const socket = (mux.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    const big = mux.open('fair-big');
    await editor.waitForAck(editor.type('small edit'));
    socket.resume();
    const bigLengthThen = await small.waitFor(() => (small.textLength > 0 ? big.textLength : undefined), 'the small update', 60_000);
    // The large state comes in pieces (a fresh replica's answer): some may be in, not all of it.
    expect(bigLengthThen).toBeLessThan(2 * half);
    await big.waitFor(() => big.textLength === 2 * half || undefined, 'the large document synced', 60_000);
    expect(big.text.slice(half - 1, half + 1)).toBe('ab');
    await editor.close();
    await mux.close();
  });
});

describe('multiplexed endpoint: flow control of chunks (mux-flow)', () => {
  it('a large answer stops at the window until the client credits it, while small frames still pass', async () => {
    await using relay = await startAttackedRelay();
    const size = 4 * 1024 * 1024;
    const writer = await ProtocolClient.synced(`${relay.url}/flow-big`);
    await writer.waitForAck(writer.type('a'.repeat(size)), 60_000);
    await writer.close();
    const editor = await ProtocolClient.synced(`${relay.url}/flow-small`);
    const mux = await MuxClient.connect(relay.url, { capabilities: [MUX_FLOW_CAPABILITY] });
    expect((await mux.waitHello()).capabilities).toContain(MUX_FLOW_CAPABILITY);
    const small = await mux.synced('flow-small');
    const big = mux.open('flow-big');
    await mux.waitFor(() => mux.chunkBytes >= FLOW_WINDOW_BYTES || undefined, 'a window of chunks', 30_000);
    // The window is used up (a chunk goes while any of it is left, so at most one past it): a
    // small update still comes through, and no chunk with it.
    await editor.waitForAck(editor.type('small edit'));
    await small.waitFor(() => small.textLength > 0 || undefined, 'the small update', 30_000);
    const first = mux.chunkBytes;
    expect(first).toBeLessThan(FLOW_WINDOW_BYTES + CHUNK_BYTES);
    // A credit for what came opens the next window.
    mux.sendControl({ type: 'chunk-credit', bytes: first });
    await mux.waitFor(() => mux.chunkBytes >= first + FLOW_WINDOW_BYTES || undefined, 'the next window', 30_000);
    await editor.waitForAck(editor.type('!'));
    await small.waitFor(() => small.textLength === 'small edit!'.length || undefined, 'the second small update', 30_000);
    const second = mux.chunkBytes;
    expect(second).toBeLessThan(first + FLOW_WINDOW_BYTES + CHUNK_BYTES);
    // Credited as it comes from now on (and what is outstanding): the document arrives whole.
    mux.autoCredit = true;
    mux.sendControl({ type: 'chunk-credit', bytes: second - first });
    await big.waitFor(() => big.textLength === size || undefined, 'the large document', 60_000);
    await editor.close();
    await mux.close();
  });

  it('a client that does not say mux-flow gets its chunks without credits', async () => {
    await using relay = await startAttackedRelay();
    const size = 3 * 1024 * 1024;
    const writer = await ProtocolClient.synced(`${relay.url}/noflow-big`);
    await writer.waitForAck(writer.type('a'.repeat(size)), 60_000);
    await writer.close();
    const mux = await MuxClient.connect(relay.url);
    const big = mux.open('noflow-big');
    await big.waitFor(() => big.textLength === size || undefined, 'the large document', 60_000);
    expect(mux.chunkBytes).toBeGreaterThan(FLOW_WINDOW_BYTES);
    await mux.close();
  });
});

describe('multiplexed endpoint: a failing session is closed alone', () => {
  it('a document the token may not read is refused on its own (4403); a bad name 4404; the others keep syncing', async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const token = await mintToken(SECRET, { sub: 'alice', docs: { 'team/*': 'write', handbook: 'read' } });
    const mux = await MuxClient.connect(relay.url, { token });
    const a = mux.open('team/a');
    const secret = mux.open('private/x');
    const badName = mux.open('.capsync/locks');
    const handbook = mux.open('handbook');
    const b = mux.open('team/b');
    expect(await secret.waitClosed()).toMatchObject({ code: CloseCode.Forbidden });
    expect(errorCodeFromReason(secret.closeInfo!.reason)).toBe('forbidden');
    expect(await badName.waitClosed()).toMatchObject({ code: CloseCode.InvalidDocName });
    expect(await handbook.waitOpened()).toBe('read');
    expect([await a.waitOpened(), await b.waitOpened()]).toEqual(['write', 'write']);

    const everyone = await mintToken(SECRET, { sub: 'bob' });
    const plainA = await ProtocolClient.synced(`${relay.url}/team/a?token=${everyone}`);
    await Promise.all([a.waitSynced(), b.waitSynced(), handbook.waitSynced()]);
    await typed(a, 'still syncing');
    await plainA.waitForText('still syncing');
    await typed(b, 'b too');
    // Read-only: the update is refused with a typed error, and the session stays.
    handbook.type('nope');
    const refused = await handbook.waitFor(() => handbook.errors[0], 'read-only error');
    expect(refused.code).toBe('read-only');
    expect(handbook.closeInfo).toBeNull();
    expect(mux.closeInfo).toBeNull();
    expect(await metricValue(relay.httpUrl, 'capsync_refusals_total', { reason: 'forbidden' })).toBeGreaterThanOrEqual(1);
    await plainA.close();
    await mux.close();
  });

  it('a bad token closes the socket at the upgrade with 4401', async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const mux = await MuxClient.connect(relay.url, { token: 'not-a-jwt' });
    expect((await mux.waitClosed()).code).toBe(CloseCode.Unauthorized);
  });

  it('a malformed inner message closes its session only (named code); others keep syncing', async () => {
    await using relay = await startAttackedRelay();
    const mux = await MuxClient.connect(relay.url);
    const [bad, garbage, good] = await Promise.all([mux.synced('bad'), mux.synced('garbage'), mux.synced('good')]);
    bad.sendRaw(new Uint8Array([100, 99])); // an unknown capsync kind
    garbage.sendMessage({ type: 'update', update: new Uint8Array([1, 2, 3, 4, 5]) }); // not a Yjs update
    expect((await bad.waitClosed()).code).toBe(CloseCode.BadMessage);
    expect((await garbage.waitClosed()).code).toBe(CloseCode.InvalidUpdate);
    await typed(good, 'unaffected');
    expect(mux.closeInfo).toBeNull();
    expect(await metricValue(relay.httpUrl, 'capsync_connections')).toBe(1);
    await mux.close();
  });

  it(`--max-sessions-per-socket refuses the open past it (4413, counted); the others carry on; a close makes room`, async () => {
    await using relay = await startAttackedRelay(['--max-sessions-per-socket', '3']);
    const mux = await MuxClient.connect(relay.url);
    const open = await Promise.all([mux.synced('cap-0'), mux.synced('cap-1'), mux.synced('cap-2')]);
    const over = mux.open('cap-3');
    const closed = await over.waitClosed();
    expect(closed.code).toBe(CloseCode.LimitExceeded);
    expect(closed.reason).toMatch(/^limit-exceeded: max-sessions-per-socket/);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-sessions-per-socket' })).toBe(1);
    await Promise.all(open.map((s, i) => typed(s, `still ${i}`)));
    await open[0]!.close();
    const room = await mux.synced('cap-3');
    await typed(room, 'fits now');
    await mux.close();
  });
});

describe('multiplexed endpoint: what breaks the socket closes it', () => {
  const ping = encodeMuxFrame(0, encodeMessage({ type: 'ping', id: 1 }));
  const cases: [string, (mux: MuxClient) => void, number][] = [
    ['a frame for a session never opened', (mux) => mux.sendFrame(99, encodeMessage({ type: 'ping', id: 1 })), CloseCode.BadMessage],
    ['a malformed session id', (mux) => mux.sendRaw(new Uint8Array([0xff, 0xff])), CloseCode.BadMessage],
    ['an open of an even sid (the relay opens those)', (mux) => mux.sendControl({ type: 'session-open', sid: 2, kind: 'doc', name: 'x', subdoc: '', capabilities: [] }), CloseCode.BadMessage],
    ['a second hello', (mux) => mux.sendControl({ type: 'hello', protocolVersion: 1, capabilities: [] }), CloseCode.BadMessage],
    ['a document message on the control session', (mux) => mux.sendFrame(0, encodeMessage({ type: 'sync-step-1', stateVector: new Uint8Array([0]) })), CloseCode.BadMessage],
    ['a text frame', (mux) => mux.sendRaw('hello'), CloseCode.UnsupportedData],
    ['a batch inside a batch', (mux) => mux.sendBatched(() => mux.sendRaw(encodeBatch([ping], batchedSize(ping)))), CloseCode.BadMessage],
    // A batch is one task's frames, at most BATCH_BYTES (64 KiB) of them: one of --max-message-bytes
    // (16 MiB) was millions of frames handled in one go, the relay's event loop held for seconds.
    ['a batch of more frames than one batch holds (64 KiB)', (mux) => mux.sendBatched(() => range(20_000).forEach(() => mux.sendRaw(ping))), CloseCode.BadMessage],
    ['a batch whose frame runs past its end', (mux) => mux.sendRaw(new Uint8Array([0, 100, 15, 9, ...ping])), CloseCode.BadMessage],
  ];
  for (const [what, send, code] of cases) {
    it(`${what}: ${code}, and every session on it is released`, async () => {
      await using relay = await startAttackedRelay();
      const mux = await MuxClient.connect(relay.url);
      const sessions = await Promise.all([mux.synced('s-1'), mux.synced('s-2')]);
      const bystander = await MuxClient.connect(relay.url);
      const other = await bystander.synced('s-1');
      send(mux);
      expect((await mux.waitClosed()).code).toBe(code);
      expect(sessions.map((s) => s.closeInfo?.code)).toEqual([code, code]);
      await waitForMetricTo(relay.httpUrl, 'capsync_connections', {}, (v) => v === 1, '= 1');
      await typed(other, 'bystander served');
      await bystander.close();
    });
  }

  it('an open before hello closes the socket 4400; a hello of an unknown protocol version 4426', async () => {
    await using relay = await startAttackedRelay();
    const silent = await MuxClient.connect(relay.url, { hello: false });
    silent.open('early');
    expect((await silent.waitClosed()).code).toBe(CloseCode.BadMessage);
    const future = await MuxClient.connect(relay.url, { protocolVersion: 99 });
    const closed = await future.waitClosed();
    expect(closed.code).toBe(CloseCode.ProtocolVersion);
    expect(future.control.filter((m) => m.type === 'hello')).toEqual([]);
  });

  it('the plain endpoint still refuses names under .capsync/ (4404), so an older relay tells a mux client to fall back', async () => {
    await using relay = await startAttackedRelay();
    for (const path of ['.capsync/mux/x', '.capsync/muxy']) {
      const c = await ProtocolClient.connect(`${relay.url}/${path}`);
      expect((await c.waitClosed()).code).toBe(CloseCode.InvalidDocName);
    }
    // And the mux path answers a ping on its control session.
    const mux = await MuxClient.connect(relay.url);
    mux.sendRaw(encodeMuxFrame(0, encodeMessage({ type: 'ping', id: 7 })));
    await mux.waitFor(() => mux.control.some((m) => m.type === 'pong' && m.id === 7), 'pong');
    await mux.close();
  });
});
