/**
 * Hostile review of issue 12 (P2, `/.capsync/mux`): a `session-open` lists at most 64
 * capabilities, but each could be as long as the frame (`--max-message-bytes`), and a session
 * keeps its open's capabilities (in its hello) for its life. One socket's 2000 sessions could so
 * hold 2000 x max-message-bytes (32 GB at the defaults); a plain connection holds one hello.
 * Measured before the fix: 100 sessions with a 1 MiB capability each grew the relay by 133 MiB,
 * and the socket stayed open.
 *
 * Now a capability is at most MAX_CAPABILITY_LENGTH characters (the longest real one, an owner
 * key, is 134), in every hello and session-open: a longer one is a malformed message (4400; on
 * the control session of a multiplexed socket, the socket's).
 */
import { describe, expect, it } from 'vitest';
import { CloseCode, MAX_CAPABILITY_LENGTH } from '@capsync/core';
import { heavy, startAttackedRelay, startBystander, worst } from '../support/attack.js';
import { MuxClient } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';

const MiB = 1024 * 1024;
const N = heavy ? 1000 : 100;

describe('capabilities of a hello or a session-open are bounded in length', () => {
  it(`issue-12 review (mux open capabilities): ${N} session-opens with a 1 MiB capability each close the socket 4400, holding nothing`, async () => {
    await using relay = await startAttackedRelay(['--max-message-bytes', String(2 * MiB), '--max-sessions-per-socket', String(N)]);
    const bystander = await startBystander(relay.url);
    const before = await relay.rss();
    const mux = await MuxClient.connect(relay.url);
    await mux.waitHello();
    const capability = 'writes:' + '7'.repeat(MiB);
    for (let i = 0; i < N && mux.isOpen; i++) {
      mux.open(`c-${i}`, { sync: false, capabilities: [capability] });
      while (mux.ws.bufferedAmount > 8 * MiB) await new Promise((r) => setTimeout(r, 5));
    }
    mux.sendControl({ type: 'ping', id: 1 });
    await mux.waitFor(() => mux.closeInfo ?? mux.control.some((m) => m.type === 'pong'), 'the socket to close or answer', 30_000);
    const grown = (await relay.rss()) - before;
    console.log(`mux open capabilities: relay RSS +${(grown / MiB).toFixed(0)} MiB; socket ${mux.closeInfo ? `closed ${mux.closeInfo.code}` : 'open'}`);
    expect((await mux.waitClosed()).code).toBe(CloseCode.BadMessage);
    expect(grown).toBeLessThan((N * MiB) / 2);
    expect(worst(await bystander.stop())).toBeLessThan(1_000);
  });

  it('the same bound holds for the hello of a plain connection; an owner key of the longest accepted length passes', async () => {
    await using relay = await startAttackedRelay();
    const ok = await ProtocolClient.synced(`${relay.url}/d`, { capabilities: ['owner:' + 'k'.repeat(128)] });
    await ok.close();
    const bad = await ProtocolClient.connect(`${relay.url}/d`, { capabilities: ['x'.repeat(MAX_CAPABILITY_LENGTH + 1)] });
    expect((await bad.waitClosed()).code).toBe(CloseCode.BadMessage);
  });
});
