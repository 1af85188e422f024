/**
 * FencedWriteForwarder on its own, against a real relay behind a TCP fault proxy: one attempt
 * of the Dialer (dialOnce) per write, bounded by the write's deadline and never retried. The
 * happy path (the change before the answer, on both relays) is test/federation/fenced-forwarding.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { CpSetMessage } from '@capsync/core';
import { createRelay, type RelayHandle } from '../src/create-relay.js';
import { createLogger } from '../src/logger.js';
import { FencedWriteForwarder } from '../src/mesh/fenced-write-forwarder.js';
import type { RelayDoc } from '../src/relay/relay-doc.js';
import { FaultProxy } from '../../../test/support/fault-proxy.js';
import { waitForEvent } from '../../../test/support/wait.js';

const logger = createLogger('silent');
const TIMEOUT_MS = 600;
/** The forwarder reads only the name of the document until the authority answers. */
const doc = { name: 'fenced-doc' } as RelayDoc;
const write: CpSetMessage = { type: 'cp-set', id: 7, key: 'k', token: 1, json: '1' };

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function authority(options: Parameters<typeof createRelay>[0] = {}): Promise<RelayHandle> {
  const relay = await createRelay({ port: 0, storage: 'memory', peerToken: 'forwarder-test-token', ...options });
  cleanups.push(() => relay.close());
  return relay;
}

async function proxy(port: number, mode: 'pass' | 'hold'): Promise<FaultProxy> {
  const p = await FaultProxy.start(port, { mode });
  cleanups.push(() => p.close());
  return p;
}

function forwarder(url: string, credential: () => Promise<string | undefined> = async () => 'forwarder-test-token'): FencedWriteForwarder {
  return new FencedWriteForwarder({ url, relayId: 'forwarding-relay', credential, timeoutMs: TIMEOUT_MS, outbound: { sendBufferLimit: 1 << 20, slowConsumerGraceMs: 1_000 }, logger });
}

describe('FencedWriteForwarder', () => {
  it('answers unavailable at its deadline when the authority says nothing, and leaves no connection behind', async () => {
    const a = await authority();
    const held = await proxy(a.port, 'hold');
    const started = performance.now();
    const outcome = await forwarder(held.url).forward(doc, write);
    const ms = performance.now() - started;
    expect(outcome.code).toBe('unavailable');
    expect(outcome.message).toMatch(/did not answer the fenced write within 600 ms/);
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(ms).toBeLessThan(TIMEOUT_MS + 400);
    // One attempt, given up: no retry after the deadline, and the socket is closed.
    expect(held.accepted).toBe(1);
    // Healed, the proxy passes on that the forwarder closed its side (a socket still open would upgrade now).
    held.heal();
    await waitForEvent(held, 'closed', () => held.open === 0, 'the held connection to be closed', 2_000);
    expect(held.accepted).toBe(1);
  });

  it('answers unavailable at once, naming the refusal, when the authority refuses the credential', async () => {
    const a = await authority({ authSecret: 'forwarder-secret-that-is-long-enough', peerToken: undefined });
    const started = performance.now();
    const outcome = await forwarder(a.url, async () => 'not-a-valid-token').forward(doc, write);
    expect(outcome.code).toBe('unavailable');
    expect(outcome.message).toMatch(/unauthori[sz]ed|4401/i);
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS);
  });

  it('answers unavailable at once when nothing listens, and does not retry', async () => {
    const a = await authority();
    const p = await proxy(a.port, 'pass');
    p.setMode('reset');
    const started = performance.now();
    const outcome = await forwarder(p.url).forward(doc, write);
    expect(outcome.code).toBe('unavailable');
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS);
    expect(p.accepted).toBe(1);
  });
});
