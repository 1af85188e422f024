/**
 * The client under the relay's awareness limits (issue 11): a presence state the relay refuses
 * with 4413 `limit-exceeded` is dropped with a typed error instead of being sent again after
 * every reconnect; the document keeps syncing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient, type CapsyncClient, type CapsyncError, type DocHandle } from '@capsync/client';
import { startAttackedRelay } from '../support/attack.js';
import { TEST_CLIENT_DEFAULTS, until, whenStatus } from '../support/client-fixture.js';
import { metricValue } from '../support/relay-observe.js';

const DOC = 'presence';
const clients: CapsyncClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
});

async function open(url: string): Promise<DocHandle> {
  const client = createClient({ url, storage: 'memory', WebSocket: WebSocket as never, ...TEST_CLIENT_DEFAULTS });
  clients.push(client);
  return client.open(DOC);
}

describe('presence refused by the relay', () => {
  it('a presence state over --max-awareness-state-bytes is dropped with a LimitExceededError, once; edits keep syncing', async () => {
    await using relay = await startAttackedRelay(['--max-awareness-state-bytes', '1024']);
    const alice = await open(relay.url);
    const bob = await open(relay.url);
    await whenStatus(alice, 'synced');
    await whenStatus(bob, 'synced');
    const errors: CapsyncError[] = [];
    alice.on('error', (e) => errors.push(e));
    let opens = 0;
    alice.on('status', (s) => {
      if (s === 'syncing') opens++;
    });

    alice.awareness.setLocalState({ user: 'alice', avatar: 'x'.repeat(4096) });
    await until(alice, 'error', () => errors.length > 0, 'the refusal');
    expect(errors.map((e) => [e.code, (e as CapsyncError & { limit?: string }).limit])).toEqual([['limit-exceeded', 'max-awareness-state-bytes']]);
    // Emptied, not null: a cursor plugin's setLocalStateField must keep working.
    expect(alice.awareness.getLocalState()).toEqual({});
    alice.awareness.setLocalStateField('cursor', 3);
    expect(alice.awareness.getLocalState()).toEqual({ cursor: 3 });

    // The document syncs on the next connection, without the refused state.
    alice.doc.getText('t').insert(0, 'still syncing');
    await alice.flush({ timeoutMs: 10_000 });
    await bob.whenSynced({ timeoutMs: 10_000 });
    expect(bob.doc.getText('t').toString()).toBe('still syncing');
    // A smaller state goes out as usual and reaches bob.
    alice.awareness.setLocalState({ user: 'alice' });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("alice's small presence never reached bob")), 10_000);
      const check = () => {
        if ((bob.awareness.getStates().get(alice.awareness.clientID) as { user?: string } | undefined)?.user !== 'alice') return;
        clearTimeout(timer);
        bob.awareness.off('change', check);
        resolve();
      };
      bob.awareness.on('change', check);
      check();
    });

    // Refused once, not once per reconnect: one refusal on the relay, one reconnect, one error.
    expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-awareness-state-bytes' })).toBe(1);
    expect(errors).toHaveLength(1);
    expect(opens).toBeLessThanOrEqual(2);
    expect(alice.status).toBe('synced');
  }, 30_000);
});
