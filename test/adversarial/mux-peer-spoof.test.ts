/**
 * Hostile review of issue 12 P5 (mesh over mux): `/.capsync/mux?relay=<id>` is a peer relay's
 * pair socket (PeerMuxSocket: relay trust, no session cap, reserved `.capsync/sub/` names) only
 * for a relay credential naming that relay. A client's token with `?relay=` and a relay's hello
 * is still a client's socket (its session cap, no reserved names); a relay credential naming
 * another relay, or a hello naming another relay than the credential's, is refused 4403.
 */
import { describe, expect, it } from 'vitest';
import { CloseCode, RELAY_CAPABILITY, RELAY_ID_PREFIX, errorCodeFromReason, subdocStorageName } from '@capsync/core';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient } from '../support/mux-client.js';
import { mintToken } from '../support/tokens.js';

const SECRET = 'mux-peer-spoof-secret';
const relayCredential = (id: string): Promise<string> => mintToken(SECRET, { sub: `relay:${id}`, claims: { capsync_relay: true } });

describe('the peer path of /.capsync/mux needs the named relay credential', () => {
  it('issue-12 review (mux peer spoof): a client token with ?relay= and a relay hello gets a client socket; a credential or hello naming another relay is refused 4403', async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET, '--max-sessions-per-socket', '2']);
    const hello = (id: string): string[] => [RELAY_CAPABILITY, RELAY_ID_PREFIX + id];

    // A client's token posing as relay "evil": served as a client.
    const client = await MuxClient.connect(relay.url, { token: await mintToken(SECRET, { sub: 'mallory' }), query: { relay: 'evil' }, capabilities: hello('evil') });
    await client.waitHello();
    const reserved = client.open(subdocStorageName('parent', 'a'.repeat(21)), { sync: false });
    expect((await reserved.waitClosed()).code).toBe(CloseCode.InvalidDocName);
    const open = [client.open('d1', { sync: false }), client.open('d2', { sync: false })];
    for (const s of open) expect(await s.waitOpened()).toBe('write');
    const third = client.open('d3', { sync: false });
    const refused = await third.waitClosed();
    expect(errorCodeFromReason(refused.reason)).toBe('limit-exceeded'); // the client cap, not a peer's (uncapped)
    expect(client.closeInfo).toBeNull();
    await client.close();

    // Relay "a"'s credential naming relay "b" in the query.
    const other = await MuxClient.connect(relay.url, { token: await relayCredential('a'), query: { relay: 'b' }, capabilities: hello('b') });
    expect((await other.waitClosed()).code).toBe(CloseCode.Forbidden);

    // Relay "a"'s credential, query "a", hello naming "b".
    const lying = await MuxClient.connect(relay.url, { token: await relayCredential('a'), query: { relay: 'a' }, capabilities: hello('b') });
    expect((await lying.waitClosed()).code).toBe(CloseCode.Forbidden);

    // The real one is a peer socket: it may open a reserved subdocument name.
    const peer = await MuxClient.connect(relay.url, { token: await relayCredential('a'), query: { relay: 'a' }, capabilities: hello('a') });
    const sub = peer.open(subdocStorageName('parent', 'a'.repeat(21)), { sync: false });
    expect(await sub.waitOpened()).toBe('write');
    await peer.close();
  });
});
