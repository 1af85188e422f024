/**
 * `PATCH /v1/docs/:name` (issue 14): JSON edits to top-level maps and texts for backends without
 * Yjs; committed before the answer, sent to the clients, refused whole when malformed.
 */
import { afterEach, expect, it } from 'vitest';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { signToken } from '../support/tokens.js';
import { metricValue } from '../support/relay-observe.js';

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

it('regression: an edit of a name holding another kind of type is refused (409 conflict), not written into it unseen', async () => {
  const relay = await startRelay({});
  relays.push(relay);
  const client = await ProtocolClient.synced(relay.docUrl('kinds'));
  clients.push(client);
  await client.waitForAck(client.type('typed text')); // 't' is a Y.Text
  const list = client.doc.getArray<number>('list');
  list.push([1, 2]);
  await client.waitForAck(client.seq);
  await client.waitFor(() => client.ackedSeq === client.seq || undefined, 'the array acked');

  for (const edits of [[{ map: 't', set: { hidden: 'in the text' } }], [{ text: 'list', append: 'x' }], [{ map: 'm', set: { a: 1 } }, { text: 'm', append: 'x' }]]) {
    const answer = await patch(relay, 'kinds', { edits });
    expect(answer.status, JSON.stringify(edits)).toBe(409);
    expect((answer.json['error'] as { code: string }).code).toBe('conflict');
  }
  const stored = await (await fetch(`${relay.httpUrl}/v1/docs/kinds`)).json();
  expect(stored).toEqual({ t: 'typed text', list: [1, 2] });
  // Kinds that match are written as ever.
  expect((await patch(relay, 'kinds', { edits: [{ text: 't', append: '!' }] })).status).toBe(200);
  await client.waitForText('typed text!');
});

it('regression: a value nested past --max-json-depth is refused (422 too-deep), checked without recursion', async () => {
  const relay = await startRelay({ maxJsonDepth: 10 });
  relays.push(relay);
  const nest = (n: number) => {
    let v: unknown = 'leaf';
    for (let i = 0; i < n; i++) v = { v };
    return v;
  };
  // The map is depth 1: nine objects inside make depth 10 (GET renders it), ten make 11.
  expect((await patch(relay, 'deep', { edits: [{ map: 'm', set: { a: nest(9) } }] })).status).toBe(200);
  const refused = await patch(relay, 'deep', { edits: [{ map: 'm', set: { b: nest(10) } }] });
  expect(refused.status).toBe(422);
  expect((refused.json['error'] as { code: string }).code).toBe('too-deep');
  // Far past the stack: refused the same way, not a 500 or a crash.
  let huge = '"leaf"';
  for (let i = 0; i < 100_000; i++) huge = `[${huge}]`;
  const body = `{"edits":[{"map":"m","set":{"c":${huge}}}]}`;
  expect((await patch(relay, 'deep', body)).status).toBe(422);
  expect((await (await fetch(`${relay.httpUrl}/v1/docs/deep`)).json()) as unknown).toEqual({ m: { a: nest(9) } });
});

it('regression: PATCH costs a copy of the document, so documents over --max-patch-doc-bytes are refused (429, counted)', async () => {
  const relay = await startRelay({ maxPatchDocBytes: 4_096 });
  relays.push(relay);
  const client = await ProtocolClient.synced(relay.docUrl('big'));
  clients.push(client);
  expect((await patch(relay, 'big', { edits: [{ text: 't', append: 'small;' }] })).status).toBe(200);
  await client.waitForAck(client.type('x'.repeat(5_000)));
  const refused = await patch(relay, 'big', { edits: [{ text: 't', append: 'more' }] });
  expect(refused.status).toBe(429);
  expect((refused.json['error'] as { code: string }).code).toBe('limit-exceeded');
  expect(await metricValue(relay.httpUrl, 'capsync_limit_refusals_total', { limit: 'max-patch-doc-bytes' })).toBe(1);
  // Other documents are edited as ever.
  expect((await patch(relay, 'small', { edits: [{ text: 't', append: 'ok' }] })).status).toBe(200);
});
