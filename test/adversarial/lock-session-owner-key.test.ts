/**
 * Hostile review of issue 12 (lock sessions): the owner key a lock session acts with is the
 * socket's hello's, else the one its `session-open` lists (the relay appends the open's
 * capabilities to the socket's hello). The socket's hello is checked once (a malformed key
 * closes the socket before any session exists), but a lock session-open's own key was only
 * parsed inside the LockConnection's constructor, after the session was accepted and
 * `session-opened` sent. Bad input on one session must end that session alone (as a second
 * lock session, or a lock session naming a document, is refused alone), the documents on the
 * socket carrying on.
 */
import { describe, expect, it } from 'vitest';
import { CloseCode, OWNER_KEY_PREFIX, errorCodeFromReason } from '@capsync/core';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient } from '../support/mux-client.js';

describe('the owner key of a lock session-open', () => {
  it('issue-12 review (lock session owner key): a malformed key refuses that session alone; the socket and its documents carry on', async () => {
    await using relay = await startAttackedRelay();
    const mux = await MuxClient.connect(relay.url); // no owner key in the socket's hello
    const doc = await mux.synced('owner-key-bystander');
    const locks = mux.open('', { kind: 'locks', sync: false, capabilities: [OWNER_KEY_PREFIX + '!!'] });
    await mux.waitFor(() => locks.closeInfo ?? mux.closeInfo ?? undefined, 'the session or the socket to close');
    console.log(`lock session owner key: session ${locks.closeInfo ? `closed ${locks.closeInfo.code}` : 'open'}; socket ${mux.closeInfo ? `closed ${mux.closeInfo.code} ${mux.closeInfo.reason}` : 'open'}`);
    expect(mux.closeInfo).toBeNull();
    expect(locks.closeInfo!.code).toBe(CloseCode.BadMessage);
    expect(errorCodeFromReason(locks.closeInfo!.reason)).toBe('bad-message');
    // A well-formed key opens one.
    const good = mux.open('', { kind: 'locks', sync: false, capabilities: [OWNER_KEY_PREFIX + 'a'.repeat(22)] });
    expect(await good.waitOpened()).toBe('write');
    doc.type('unaffected');
    await doc.waitForAck(doc.seq);
    expect(mux.closeInfo).toBeNull();
    await mux.close();
  });
});
