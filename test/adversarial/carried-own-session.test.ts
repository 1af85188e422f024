import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient, MemoryStorage, type CapsyncClient, type ClientOptions, type DocHandle } from '@capsync/client';
import { startAttackedRelay } from '../support/attack.js';
import { TEST_CLIENT_DEFAULTS } from '../support/client-fixture.js';
import { connectAs, replicaAs, updateOf } from '../support/client-ids.js';
import type { ProtocolClient } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';

/**
 * Fourth review of issue 11: a capsync client declared only its current session's client id
 * (doc-handle.ts: `writes:<doc.clientID>`), so the edits of the same user's other sessions that
 * it uploads (a second tab sharing the offline replica, or an earlier page load's offline
 * edits in the outbox) were "carried": charged to alice's budget but claimed by nobody. Anyone
 * who sees the new id in the document (any reader's state vector) declared it and wrote one
 * struct at its next clock first: mallory owned alice's session id (history attribution of
 * alice's offline text said mallory), and when alice's first tab came online its next edit
 * under its own id was refused 4403 not-owner, forever (the client retries with backoff).
 * Now the client declares every client id its pending outbox batches were written under
 * (stored with each batch), so the upload claims them for alice.
 */

const SECRET = 'adversarial-rev4-carried-own-session-0123456789';
const DOC = 'carried-own-session';

const clients: CapsyncClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
});

/** A tab of alice's browser profile (`device`: the storage its tabs share). */
async function tabOf(url: string, device: MemoryStorage, options: Partial<ClientOptions> = {}): Promise<DocHandle> {
  const client = createClient({ url, storage: device, WebSocket: WebSocket as never, ...TEST_CLIENT_DEFAULTS, token: () => mintToken(SECRET, { sub: 'alice' }), ...options });
  clients.push(client);
  return client.open(DOC);
}

function outcome(c: ProtocolClient): Promise<string> {
  const seq = c.seq;
  return c.ackedOrClosed(seq);
}

describe('adversarial (rev4): squatting a session id another tab of its user carried', () => {
  it("issue-11 rev4 attack (carried own session): alice's tab 2 uploads tab 1's offline edits; mallory cannot take tab 1's id, and tab 1's next edit is acknowledged", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/${DOC}`;
    const seed = await connectAs(url, SECRET, 'carol');
    seed.type('seed:');
    await seed.waitForAck(seed.seq);

    // Tab 1 was opened offline and typed; its edit is in the replica both tabs share.
    const device = new MemoryStorage();
    const tab1 = await tabOf(relay.url, device, { connect: false });
    tab1.doc.getText('t').insert(0, 'offline-1 ');
    await tab1.flush({ durability: 'local' });
    const S1 = tab1.doc.clientID;

    // Tab 2 opens on the same profile and comes online first: it uploads the replica's outbox
    // (tab 1's edit) with its first sync.
    const tab2 = await tabOf(relay.url, device);
    expect(tab2.doc.clientID).not.toBe(S1);
    await tab2.flush({ timeoutMs: 10_000 });

    // Mallory (a writer) reads S1 from the document and writes at its next clock.
    const mallory = await connectAs(url, SECRET, 'mallory', { capabilities: [`writes:${S1}`] });
    expect(mallory.doc.getText('t').toString()).toContain('offline-1 ');
    expect(mallory.doc.store.clients.has(S1)).toBe(true);
    const squat = replicaAs(mallory, S1);
    mallory.sendMessage({ type: 'update', update: updateOf(squat, () => squat.getText('t').insert(0, 'M')) });
    const squatted = await outcome(mallory);
    console.log(`mallory writing under alice's tab-1 id S1 (uploaded by tab 2): ${squatted}`);

    // Tab 1 comes online and types again under its own id.
    tab1.connect();
    tab1.doc.getText('t').insert(0, 'offline-2 ');
    const tab1Result = await tab1.flush({ timeoutMs: 10_000 }).then(
      () => 'acked',
      (e: Error) => e.message,
    );
    console.log(`alice's tab 1 next edit under its own id: ${tab1Result}`);

    expect(squatted).toMatch(/^closed 4403 not-owner/);
    expect(tab1Result).toBe('acked');
    // Stored: alice's text, none of mallory's.
    const reader = await connectAs(url, SECRET, 'bob');
    const text = reader.doc.getText('t').toString();
    expect(text).toContain('offline-1 ');
    expect(text).toContain('offline-2 ');
    expect(text).toContain('seed:');
    expect(text).not.toContain('M');
    await Promise.all([seed.close(), reader.close()]);
  }, 60_000);
});
