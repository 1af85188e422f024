import { describe, expect, it } from 'vitest';
import { CloseCode, MUX_BATCH_CAPABILITY } from '@capsync/core';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { metricValue } from '../support/relay-observe.js';

/**
 * A client may send a large message over a multiplexed socket as chunks (so its other
 * documents' frames are not held behind it). What the relay holds for unfinished chunked
 * messages is bounded per socket: one message of --max-message-bytes, and twice that for all
 * sessions' unfinished ones together. Past it the socket closes 4413, counted under
 * `max-message-bytes`; other clients stay served and stored data is intact.
 */

const KiB = 1024;
const chunk = (bytes: number, last: boolean): Uint8Array => {
  const body = new Uint8Array(3 + bytes);
  body.set([100, 14, last ? 1 : 0]);
  return body;
};

describe('chunked messages from a client are bounded per socket', () => {
  it('a chunked message over --max-message-bytes, or unfinished ones over twice it, close the socket 4413; others carry on', async () => {
    await using relay = await startAttackedRelay(['--max-message-bytes', String(256 * KiB)]);
    const bystander = await ProtocolClient.synced(`${relay.url}/bystander`);
    await bystander.waitForAck(bystander.type('kept'));

    // One message past the limit, 64 KiB at a time and never finished.
    const one = await MuxClient.connect(relay.url);
    await one.waitHello();
    const a = one.open('chunks-a');
    await a.waitSynced();
    for (let i = 0; i < 5 && !one.closeInfo; i++) one.sendFrame(a.sid, chunk(64 * KiB, false));
    expect((await one.waitClosed()).code).toBe(CloseCode.LimitExceeded);

    // Many sessions, each under the limit, none finished: together past twice it.
    const many = await MuxClient.connect(relay.url);
    await many.waitHello();
    const sessions = Array.from({ length: 4 }, (_, i) => many.open(`chunks-many-${i}`));
    await Promise.all(sessions.map((s) => s.waitSynced()));
    for (const s of sessions) for (let i = 0; i < 3 && !many.closeInfo; i++) many.sendFrame(s.sid, chunk(64 * KiB, false));
    expect((await many.waitClosed()).code).toBe(CloseCode.LimitExceeded);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-message-bytes' })).toBeGreaterThanOrEqual(2);

    bystander.type(' still');
    await bystander.waitForAck(bystander.seq);
    await bystander.close();
  });

  it('one-byte pieces count what holding them costs: a socket sending them in batches is closed 4413 long before it holds ~400x the bound (review rev7)', async () => {
    // --max-message-bytes 64 KiB: unfinished pieces may hold 128 KiB. Counted by their bytes,
    // that was 131,072 one-byte pieces (~50 MB of the relay's memory, for 800 KB sent).
    await using relay = await startAttackedRelay(['--max-message-bytes', String(64 * KiB)]);
    const mux = await MuxClient.connect(relay.url, { capabilities: [MUX_BATCH_CAPABILITY] });
    await mux.waitHello();
    const a = mux.open('tiny-pieces');
    await a.waitSynced();
    // 10,000 one-byte pieces per batch (60 KB), 3 batches.
    for (let b = 0; b < 3 && !mux.closeInfo; b++) mux.sendBatched(() => Array.from({ length: 10_000 }, () => mux.sendFrame(a.sid, chunk(1, false))));
    expect((await mux.waitClosed()).code).toBe(CloseCode.LimitExceeded);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-message-bytes' })).toBe(1);
  });
});
