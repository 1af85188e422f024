/**
 * Hostile review of issue 12 (P2, `/.capsync/mux`): one socket could open the same document in
 * as many sessions as `--max-sessions-per-socket`, and every update of that document (from
 * anyone) is then sent once per session: one socket reading a busy document costs the relay the
 * fan-out of 2000 plain connections, and holds 2000 x the per-connection awareness budget in that
 * one document. Measured before the fix: 500 sessions of one document on one socket, 50 updates
 * of a writer (broadcast in 2 batches): 1,000 frames sent to the one socket, 500 per broadcast.
 *
 * Now a socket has at most one session per document (as the design's relay-to-relay rule): a
 * second open of a document already open on the socket is refused alone (4400 bad-message).
 */
import { describe, expect, it } from 'vitest';
import { CloseCode } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { MuxClient } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';

const N = heavy ? 2000 : 500;
const UPDATES = 50;

describe('a multiplexed socket opens a document once', () => {
  it(`issue-12 review (mux duplicate open): ${N} opens of one document on one socket; one is served, the others refused alone`, async () => {
    await using relay = await startAttackedRelay(['--max-sessions-per-socket', String(N), '--max-refused-opens-per-socket', String(N)]);
    const bystander = await startBystander(relay.url);
    const mux = await MuxClient.connect(relay.url);
    await mux.waitHello();
    let framesIn = 0;
    mux.ws.on('message', () => framesIn++);
    const sessions = Array.from({ length: N }, () => mux.open('hot'));
    await Promise.all(sessions.map((s) => s.waitFor(() => s.permission ?? s.closeInfo ?? undefined, `open ${s.sid}`, 30_000)));
    const served = sessions.filter((s) => s.closeInfo === null);
    const writer = await ProtocolClient.synced(`${relay.url}/hot`);
    const before = framesIn;
    for (let i = 0; i < UPDATES; i++) writer.type('u');
    await served[0]!.waitForText('u'.repeat(UPDATES), 30_000);
    await Promise.all(served.map((s) => s.waitForText('u'.repeat(UPDATES), 30_000)));
    console.log(`mux duplicate open: ${served.length} sessions served; ${framesIn - before} frames to the socket for ${UPDATES} updates`);
    expect(served.length).toBe(1);
    expect(sessions.filter((s) => s.closeInfo?.code === CloseCode.BadMessage).length).toBe(N - 1);
    expect(framesIn - before).toBeLessThan(UPDATES * 3);
    expect(mux.isOpen).toBe(true);

    // Closed, the document may be opened again on the socket.
    await served[0]!.close();
    expect(await mux.open('hot', { sync: false }).waitOpened()).toBe('write');
    expect(worst(await bystander.stop())).toBeLessThan(1_000);
    await writer.close();
    await mux.close();
  });
});
