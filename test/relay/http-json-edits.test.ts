/**
 * `PATCH /v1/docs/:name` (issue 14): JSON edits to top-level maps and texts for backends without
 * Yjs; committed before the answer, sent to the clients, refused whole when malformed.
 */
import { afterEach, expect, it } from 'vitest';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { signToken } from '../support/tokens.js';

const relays: TestRelay[] = [];
const clients: ProtocolClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.dispose()));
});

async function patch(relay: TestRelay, name: string, body: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${relay.httpUrl}/v1/docs/${name}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

it('applies map and text edits in order, commits them, and sends them to the clients', async () => {
  const relay = await startRelay({});
  relays.push(relay);
  const client = await ProtocolClient.synced(relay.docUrl('doc'));
  clients.push(client);
  await client.waitForAck(client.type('hello world'));

  const answer = await patch(relay, 'doc', {
    edits: [
      { map: 'meta', set: { title: 'Q3 plan', tags: ['a', 'b'], draft: true } },
      { map: 'meta', delete: ['draft'] },
      { text: 't', insert: 'Summary: ', at: 0 },
      { text: 't', delete: 6, at: 14 }, // " world"
      { text: 't', append: '!' },
    ],
  });
  expect(answer).toMatchObject({ status: 200, json: { durable: true, changed: true } });
  await client.waitForText('Summary: hello!');
  expect(client.doc.getMap('meta').toJSON()).toEqual({ title: 'Q3 plan', tags: ['a', 'b'] });
  const stored = await (await fetch(`${relay.httpUrl}/v1/docs/doc`)).json();
  expect(stored).toMatchObject({ t: 'Summary: hello!', meta: { title: 'Q3 plan' } });
});

it('refuses malformed edits whole, having changed nothing, and needs write permission', async () => {
  const relay = await startRelay({ authSecret: 'json-edits-secret-0123456789' });
  relays.push(relay);
  const exp = Math.floor(Date.now() / 1000) + 600;
  const writer = await signToken('json-edits-secret-0123456789', { sub: 'backend', exp, docs: { '*': 'write' } });
  const reader = await signToken('json-edits-secret-0123456789', { sub: 'viewer', exp, docs: { '*': 'read' } });
  expect((await patch(relay, 'd', { edits: [{ text: 't', append: 'first' }] }, writer)).status).toBe(200);

  for (const body of [
    { edits: [] },
    { edits: [{ text: 't', insert: 'x', at: 99 }] }, // past the end
    { edits: [{ text: 't', append: 'ok' }, { map: 'm', set: 'not an object' }] }, // the first is not applied either
    { edits: [{ text: 't', delete: -1, at: 0 }] },
    { edits: [{ nothing: 1 }] },
    '{"edits": [', // not JSON
    { edits: Array.from({ length: 1_001 }, () => ({ text: 't', append: 'x' })) },
  ]) {
    const answer = await patch(relay, 'd', body, writer);
    expect(answer.status).toBe(400);
    expect((answer.json['error'] as { code: string }).code).toBe('bad-message');
  }
  expect((await patch(relay, 'd', { edits: [{ text: 't', append: 'x' }] }, reader)).status).toBe(403);
  expect((await patch(relay, 'd', { edits: [{ text: 't', append: 'x' }] })).status).toBe(401);
  const state = await (await fetch(`${relay.httpUrl}/v1/docs/d`, { headers: { authorization: `Bearer ${writer}` } })).json();
  expect(state).toEqual({ t: 'first' });
});

it('writes every PATCH of one identity under one client id, so a backend is not locked out by --max-clients-per-identity', async () => {
  const secret = 'json-edits-review-secret-012345';
  const relay = await startRelay({ authSecret: secret, maxClientsPerIdentity: 5 });
  relays.push(relay);
  const token = await signToken(secret, { sub: 'indexer', exp: Math.floor(Date.now() / 1000) + 300, docs: { '*': 'write' } });
  const statuses: number[] = [];
  for (let i = 0; i < 10; i++) statuses.push((await patch(relay, 'doc', { edits: [{ map: 'meta', set: { counter: i } }] }, token)).status);
  expect(statuses).toEqual(Array(10).fill(200));
  const state = await (await fetch(`${relay.httpUrl}/v1/docs/doc`, { headers: { authorization: `Bearer ${token}` } })).json();
  expect(state).toEqual({ meta: { counter: 9 } });
});
