/**
 * Hostile review of issue 12 (P2, `/.capsync/mux`): a refused `session-open` (over a cap, a
 * forbidden or malformed name) is answered with a `session-close` and the socket carries on, so
 * one socket could be refused without end. Each refusal costs the relay ~40 µs, an info log line
 * and ~98 bytes sent back for an 11-byte open: 100,000 opens (1 MB) from one socket, measured,
 * took 4.1 s of the relay, sent back 9.8 MB, and stalled a bystander's round trip 3.3 s (a
 * ping flood of the same count: 364 ms). A plain connection is refused once, and a new one costs
 * a handshake and the connection caps.
 *
 * Now a socket is refused at most `--max-refused-opens-per-socket` opens in a row (an accepted
 * open starts the count again); the next refusal closes the socket 4413 `limit-exceeded`
 * (`capsync_limit_refusals_total{limit="max-refused-opens-per-socket"}`).
 */
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CloseCode, MUX_PATH, PROTOCOL_VERSION, encodeMessage, encodeMuxFrame } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { metricValue } from '../support/relay-observe.js';
import { waitForEvent } from '../support/wait.js';
import { MuxClient } from '../support/mux-client.js';

const N = heavy ? 100_000 : 20_000;
const MAX_REFUSED = 100;
const BYSTANDER_MAX_MS = 1_000;

describe('a multiplexed socket is refused a bounded number of opens', () => {
  it(`issue-12 review (mux refused opens): ${N} opens past --max-sessions-per-socket on one socket close it after ${MAX_REFUSED} refusals`, async () => {
    await using relay = await startAttackedRelay(['--max-sessions-per-socket', '1', '--max-refused-opens-per-socket', String(MAX_REFUSED)]);
    const bystander = await startBystander(relay.url);
    // A raw socket: the attacker does not decode what it gets back, it counts it.
    const ws = new WebSocket(`${relay.url}/${MUX_PATH}`, { perMessageDeflate: false });
    await new Promise((r) => ws.once('open', r));
    let bytesBack = 0;
    let closed: number | null = null;
    ws.on('message', (d: Buffer) => (bytesBack += d.byteLength));
    ws.on('close', (code) => (closed = code));
    ws.on('error', () => {});
    const open = (sid: number, name: string) => encodeMuxFrame(0, encodeMessage({ type: 'session-open', sid, kind: 'doc', name, subdoc: '', capabilities: [] }));
    ws.send(encodeMuxFrame(0, encodeMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: ['ack', 'error'] })));
    ws.send(open(1, 'held'));
    let sent = 0;
    for (let i = 0; i < N && ws.readyState === WebSocket.OPEN; i++) {
      const frame = open(3 + 2 * i, 'x');
      sent += frame.byteLength;
      ws.send(frame);
      if (ws.bufferedAmount > 1 << 20) await new Promise((r) => setTimeout(r, 1));
    }
    await waitForEvent(ws, 'close', () => closed ?? undefined, 'the socket to close', 30_000);
    console.log(`mux refused opens: ${sent} B of opens sent; ${bytesBack} B back; closed ${closed}`);
    expect(closed).toBe(CloseCode.LimitExceeded);
    // The hello, the one session's frames and MAX_REFUSED session-closes (~100 B each).
    expect(bytesBack).toBeLessThan(MAX_REFUSED * 200 + 4096);
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-refused-opens-per-socket' })).toBe(1);
    expect(worst(await bystander.stop())).toBeLessThan(BYSTANDER_MAX_MS);
  });

  it('an accepted open starts the count again: a client refused now and then keeps its socket', async () => {
    await using relay = await startAttackedRelay(['--max-refused-opens-per-socket', '2']);
    const mux = await MuxClient.connect(relay.url);
    for (let round = 0; round < 5; round++) {
      for (const bad of ['.capsync/a', '.capsync/b']) {
        const refused = mux.open(bad, { sync: false });
        expect((await refused.waitClosed()).code).toBe(CloseCode.InvalidDocName);
      }
      expect(await mux.open(`ok-${round}`, { sync: false }).waitOpened()).toBe('write');
    }
    expect(mux.isOpen).toBe(true);
    await mux.close();
  });
});
