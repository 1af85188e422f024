/**
 * Hostile review of issue 12 (lock sessions): the relay may refuse a lock session with 4413
 * `limit-exceeded` (`--max-sessions-per-address`: the client's address has its sessions open on
 * other sockets, its other tabs). The lock client took that refusal for a lost connection: the
 * acquire failed at once but `unavailable` ("connection lost ... outcome unknown"), which tells
 * the app to retry, as if the relay were unreachable, while the relay had answered why.
 * Expected: the lock calls fail fast with the relay's reason (`limit-exceeded`), as a refused
 * lock session (4403) fails them `forbidden`.
 */
import { describe, expect, it } from 'vitest';
import type { CapsyncClient, DocHandle } from '@capsync/client';
import { testScope } from '../support/test-scope.js';

const { relay, client } = testScope();

async function edit(h: DocHandle, what: string): Promise<void> {
  h.doc.getText('t').insert(0, what);
  await h.flush();
}

describe('a lock session refused by the relay for a limit', () => {
  it('issue-12 review (lock session refused cap): acquires fail fast with limit-exceeded, not unavailable by their deadline', async () => {
    const r = await relay(['--max-sessions-per-address', '2']);
    const make = (): CapsyncClient => client(r.url, { lockTimeoutMs: 5_000 });
    const tabs = make();
    const docs = await Promise.all(['addr-a', 'addr-b'].map((name) => tabs.open(name)));
    await Promise.all(docs.map((h) => edit(h, h.name)));
    const locker = make();
    const started = performance.now();
    const failure = await locker.locks.acquire('addr-cap', { ttlMs: 5_000 }).then(
      (lease) => (void lease.release(), null),
      (err: { code?: string }) => err,
    );
    const ms = performance.now() - started;
    console.log(`lock session refused cap: ${failure ? `failed ${failure.code}` : 'granted'} after ${ms.toFixed(0)} ms`);
    expect(failure?.code).toBe('limit-exceeded');
    expect(ms).toBeLessThan(4_000);
  });
});
