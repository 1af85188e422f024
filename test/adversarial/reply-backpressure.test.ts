/**
 * Issue 11, attack 2: replies bypassed backpressure. Sync step 2, awareness answers,
 * query-awareness and pong went out without the send-buffer check broadcasts had: 30 one-byte
 * query-awareness frames from a read-only client that never reads grew the relay to 2.9 GB;
 * 60 sync-step-1 frames on an 8 MB document added 520 MB; neither connection was closed.
 *
 * Now every message goes through one send-buffer accounting (4429 past the grace period or
 * over 4x the limit), and requests that each cost a full-state encoding are coalesced while
 * the previous answer is unwritten (one answer in memory per connection, however many asked).
 * Each test: a real relay process, an attacker whose socket is paused (it never reads), the
 * relay's RSS growth, a bystander's round trips during the attack, and the document intact.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { CloseCode, encodeMessage } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { seedDoc, wholeDiffStateVector } from '../support/large-answers.js';
import { metricValue, waitForLog, waitForMetric } from '../support/relay-observe.js';

const MiB = 1024 * 1024;
/** Bystander round trips during an attack stay under this (ms); the attack stalled the relay for 20 s. */
const BYSTANDER_MAX_MS = 1_000;

/**
 * Bytes the kernel takes off the relay's hands before its own buffer grows, for a reader that
 * stopped reading: the relay's socket send buffer (autotuned up to tcp_wmem's max) and the
 * reader's receive buffer (which does not grow while nothing is read: tcp_rmem's default).
 * Answers that fit there are written out, so the relay may answer a few more requests.
 */
const KERNEL_BYTES = (() => {
  const field = (file: string, i: number) => Number(readFileSync(file, 'utf8').trim().split(/\s+/)[i]);
  return field('/proc/sys/net/ipv4/tcp_wmem', 2) + field('/proc/sys/net/ipv4/tcp_rmem', 1);
})();

/** Most answers a paused reader can be sent for any number of requests: those the kernel holds, one queued, one coalesced. */
const maxAnswers = (answerBytes: number) => Math.ceil(KERNEL_BYTES / answerBytes) + 2;

/** Yields to the event loop (so the bystander in this process keeps its pace while an attacker sends). */
const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

const pause = (c: ProtocolClient): Socket => {
  const socket = (c.ws as unknown as { _socket: Socket })._socket;
  socket.pause();
  return socket;
};

/** Sets `count` awareness states of `stateBytes` each on the document (one connection): every answer carries them all. */
async function seedAwareness(url: string, count: number, stateBytes: number): Promise<ProtocolClient> {
  const owner = await ProtocolClient.synced(url);
  const doc = new Y.Doc();
  const aw = new awarenessProtocol.Awareness(doc);
  const states = new Map<number, unknown>();
  for (let i = 0; i < count; i++) states.set(1_000_000 + i, { pad: 'p'.repeat(stateBytes) });
  // A y-protocols update of many clients, as a relay of many clients would send it.
  const ids = [...states.keys()];
  for (const id of ids) {
    aw.states.set(id, states.get(id) as Record<string, unknown>);
    aw.meta.set(id, { clock: 1, lastUpdated: Date.now() });
  }
  owner.sendMessage({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(aw, ids) });
  aw.destroy();
  return owner;
}

/** A fresh client's view of the document text: the stored data, as the relay serves it. */
async function servedText(url: string): Promise<string> {
  const c = await ProtocolClient.synced(url);
  const text = c.text;
  await c.close();
  return text;
}

describe('issue 11 attack 2: replies go through backpressure', () => {
  it(`issue-11 attack 2: ${heavy ? 300 : 30} one-byte query-awareness frames from a read-only-style client that never reads are coalesced: one answer in memory, bounded RSS, bystander served`, async () => {
    const STATES = 400;
    const STATE_BYTES = 15 * 1024; // one answer is ~6 MB
    const LIMIT = 8 * MiB; // above one answer: this test pins coalescing, not the slow-consumer close
    const FRAMES = heavy ? 300 : 30;
    await using relay = await startAttackedRelay([
      '--send-buffer-limit', String(LIMIT),
      '--slow-consumer-grace-ms', '60000',
      '--max-awareness-states-per-connection', String(STATES),
    ]);
    const url = `${relay.url}/presence`;
    const text = await seedDoc(url, 1000);
    const owner = await seedAwareness(url, STATES, STATE_BYTES);
    const attacker = await ProtocolClient.synced(url);
    await attacker.waitFor(() => attacker.received.some((m) => m.type === 'awareness' && m.update.byteLength > STATES * STATE_BYTES) || undefined, 'the seeded awareness at the attacker');
    const answerBytes = STATES * STATE_BYTES;
    const bystander = await startBystander(relay.url);
    const rssBefore = await relay.rss();

    const socket = pause(attacker);
    const before = attacker.received.filter((m) => m.type === 'awareness').length;
    const queryAwareness = encodeMessage({ type: 'query-awareness' });
    for (let i = 0; i < FRAMES; i++) attacker.sendRaw(queryAwareness);
    await waitForMetric(relay.httpUrl, 'capsync_messages_in_total', { type: 'query-awareness' }, FRAMES, 30_000);
    const rssDuring = await relay.rss();
    const rtts = await bystander.stop();

    // Before: FRAMES answers of ~6 MB each were buffered (180 MB here, 2.9 GB in the issue).
    const growth = rssDuring - rssBefore;
    console.log(`query-awareness flood: ${FRAMES} frames, answer ${(answerBytes / MiB).toFixed(1)} MiB, RSS growth ${(growth / MiB).toFixed(1)} MiB, bystander worst ${worst(rtts).toFixed(0)} ms`);
    expect(growth, 'RSS growth: about one answer buffered (plus its encoding), not one per request').toBeLessThan(4 * answerBytes + 32 * MiB);
    expect(worst(rtts)).toBeLessThan(BYSTANDER_MAX_MS);

    // Reading again, the attacker gets at most the answer in flight and one coalesced answer.
    socket.resume();
    await attacker.waitFor(() => attacker.received.filter((m) => m.type === 'awareness').length >= before + 2 || undefined, 'the coalesced answers', 30_000);
    const ping = 424242;
    attacker.sendMessage({ type: 'ping', id: ping });
    await attacker.waitFor(() => attacker.received.some((m) => m.type === 'pong' && m.id === ping) || undefined, 'a pong after the answers', 30_000);
    // Before: one answer per request.
    expect(attacker.received.filter((m) => m.type === 'awareness').length - before, `answers for ${FRAMES} requests`).toBeLessThanOrEqual(maxAnswers(answerBytes));
    expect(attacker.closeInfo).toBeNull();
    expect(await servedText(url)).toBe(text);
    await attacker.close();
    await owner.close();
  });

  it(`issue-11 attack 2: 60 sync-step-1 frames on a ${heavy ? 8 : 2} MB document from a client that never reads are coalesced, RSS bounded, bystander served, document intact`, async () => {
    const DOC_BYTES = (heavy ? 8 : 2) * MiB;
    const LIMIT = 2 * DOC_BYTES; // above one answer: coalescing, not the close, bounds it
    const FRAMES = 60;
    await using relay = await startAttackedRelay(['--send-buffer-limit', String(LIMIT), '--slow-consumer-grace-ms', '60000']);
    const url = `${relay.url}/big`;
    const text = await seedDoc(url, DOC_BYTES);
    const attacker = await ProtocolClient.synced(url);
    const bystander = await startBystander(relay.url);
    const rssBefore = await relay.rss();

    const socket = pause(attacker);
    const before = attacker.received.filter((m) => m.type === 'sync-step-2').length;
    const step1 = encodeMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(new Y.Doc()) });
    const step1Before = await waitForMetric(relay.httpUrl, 'capsync_messages_in_total', { type: 'sync-step-1' }, 0);
    for (let i = 0; i < FRAMES; i++) attacker.sendRaw(step1);
    await waitForMetric(relay.httpUrl, 'capsync_messages_in_total', { type: 'sync-step-1' }, step1Before + FRAMES, 30_000);
    const rssDuring = await relay.rss();
    const rtts = await bystander.stop();

    // Before: 60 full states were buffered (120 MB here, 520 MB on 8 MB in the issue).
    const growth = rssDuring - rssBefore;
    console.log(`sync-step-1 flood: ${FRAMES} frames on ${DOC_BYTES / MiB} MiB, RSS growth ${(growth / MiB).toFixed(1)} MiB, bystander worst ${worst(rtts).toFixed(0)} ms`);
    expect(growth).toBeLessThan(4 * DOC_BYTES + 32 * MiB);
    expect(worst(rtts)).toBeLessThan(BYSTANDER_MAX_MS);

    socket.resume();
    const ping = 434343;
    attacker.sendMessage({ type: 'ping', id: ping });
    await attacker.waitFor(() => attacker.received.some((m) => m.type === 'pong' && m.id === ping) || undefined, 'a pong after the answers', 30_000);
    await attacker.waitFor(() => attacker.received.filter((m) => m.type === 'sync-step-2').length >= before + 2 || undefined, 'the coalesced step 2', 30_000);
    const answers = attacker.received.filter((m) => m.type === 'sync-step-2').length - before;
    console.log(`sync-step-1 flood: ${answers} answers for ${FRAMES} requests (bound ${maxAnswers(DOC_BYTES)})`);
    expect(answers, `answers for ${FRAMES} requests`).toBeLessThanOrEqual(maxAnswers(DOC_BYTES));
    expect(attacker.text).toBe(text);
    expect(await servedText(url)).toBe(text);
    await attacker.close();
  });

  it('issue-11 attack 2: full-state answers to a client that never reads count against its send buffer: closed 4429 past 4x the limit, whatever it asked for', async () => {
    const LIMIT = 256 * 1024;
    await using relay = await startAttackedRelay(['--send-buffer-limit', String(LIMIT), '--slow-consumer-grace-ms', '60000']);
    const url = `${relay.url}/big`;
    const text = await seedDoc(url, 8 * LIMIT);
    const attacker = await ProtocolClient.synced(url);
    const bystander = await startBystander(relay.url);
    const socket = pause(attacker);
    const step1 = encodeMessage({ type: 'sync-step-1', stateVector: wholeDiffStateVector() });
    // Each answer the relay writes out fills the paused reader's kernel buffers; the rest stays queued.
    for (let i = 0; i < 60; i++) attacker.sendRaw(step1);
    await waitForLog(relay, (e) => e['code'] === 'slow-consumer', 'the slow-consumer close', 30_000);
    const rtts = await bystander.stop();
    expect(worst(rtts)).toBeLessThan(BYSTANDER_MAX_MS);
    socket.resume();
    const info = await attacker.waitClosed(30_000);
    // The close frame may not get through a full buffer; then the relay drops the socket.
    expect([CloseCode.SlowConsumer, 1006]).toContain(info.code);
    expect(await servedText(url)).toBe(text);
  });

  it('a replica that has nothing is answered in pieces, each once the one before was written: a client that stops reading holds back two pieces, not the document; it gets all of it when it reads again', async () => {
    await using relay = await startAttackedRelay([]);
    const url = `${relay.url}/paced`;
    const text = await seedDoc(url, 12 * MiB);
    const attacker = await ProtocolClient.synced(`${relay.url}/other`);
    // It asks with an empty state vector as it connects; its socket stops reading right after.
    const reader = await ProtocolClient.connect(url);
    const socket = pause(reader);
    // The relay writes pieces until the paused socket's kernel buffers are full; then at most
    // two wait in its send buffer (each scrape of /metrics paces the next).
    await waitForMetric(relay.httpUrl, 'capsync_messages_out_total', { type: 'update' }, 3, 30_000);
    let most = 0;
    for (let i = 0; i < 20; i++) most = Math.max(most, await metricValue(relay.httpUrl, 'capsync_unsent_bytes'));
    // Two pieces of 256 KiB (the relay's STATE_PIECE_BYTES) and a chunk's worth of slack.
    expect(most).toBeLessThanOrEqual(2 * 256 * 1024 + 64 * 1024);
    socket.resume();
    await reader.waitFor(() => reader.received.some((m) => m.type === 'sync-step-2') || undefined, 'the step 2', 60_000);
    expect(reader.doc.getText('t').toString()).toBe(text);
    await reader.close();
    await attacker.close();
  });

  it('issue-11 attack 2: a pong flood (ping messages from a client that never reads) counts against its send buffer: closed 4429 after the grace period, bystander served', async () => {
    // Pongs are ~8 bytes: a flood of them alone takes millions of pings to get past the kernel's
    // buffers (and the relay's CPU per input message is another bound). So the kernel buffers
    // are filled first, by the answer to the client's own sync (a document of about their
    // size); the pongs then queue in the relay, over the limit, and the grace period runs out.
    // Before, pongs were never accounted: the connection stayed open whatever it had queued.
    const LIMIT = 256 * 1024;
    await using relay = await startAttackedRelay(['--send-buffer-limit', String(LIMIT), '--slow-consumer-grace-ms', '500']);
    const url = `${relay.url}/pings`;
    const text = await seedDoc(url, KERNEL_BYTES);
    const bystander = await startBystander(relay.url);
    const attacker = await ProtocolClient.connect(url, { answerSync: false });
    const socket = pause(attacker);
    const ping = encodeMessage({ type: 'ping', id: 2 ** 30 });
    const closed = waitForLog(relay, (e) => e['code'] === 'slow-consumer', 'the ping flooder closed as a slow consumer', 30_000);
    let isClosed = false;
    void closed.then(() => (isClosed = true), () => {});
    let sent = 0;
    while (!isClosed && sent < 2_000_000 && attacker.ws.readyState === WebSocket.OPEN) {
      for (let i = 0; i < 1_000; i++) attacker.sendRaw(ping);
      sent += 1_000;
      // Paced, so the relay's CPU per input message is not what this test measures.
      while (attacker.ws.bufferedAmount > 0 && !isClosed) await nextTick();
      await nextTick();
    }
    await closed;
    const rtts = await bystander.stop();
    console.log(`pong flood: ${sent} pings sent until closed; bystander worst ${worst(rtts).toFixed(0)} ms`);
    expect(worst(rtts)).toBeLessThan(BYSTANDER_MAX_MS);
    socket.resume();
    expect([CloseCode.SlowConsumer, 1006]).toContain((await attacker.waitClosed(30_000)).code);
    expect(await servedText(url)).toBe(text);
  });
});
