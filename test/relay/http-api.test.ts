import http from 'node:http';
import * as jose from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { MAX_DOC_NAME_BYTES } from '@capsync/core';
import { ProtocolClient } from '../support/protocol-client.js';
import { startRelay, type TestRelay } from '../support/relay-fixture.js';
import { signToken } from '../support/tokens.js';

const SECRET = 'http-api-test-secret-0123456789';

async function sign(docs: Record<string, 'read' | 'write'>, claims: jose.JWTPayload = {}): Promise<string> {
  // Tokens must expire (the relay refuses them otherwise): in ten minutes unless `claims` say.
  return signToken(SECRET, { exp: Math.floor(Date.now() / 1000) + 600, ...claims, docs });
}

/** A Yjs update that inserts `text` into text "t" of a fresh document. */
function textUpdate(text: string): { update: Uint8Array; doc: Y.Doc } {
  const doc = new Y.Doc();
  doc.getText('t').insert(0, text);
  return { update: Y.encodeStateAsUpdate(doc), doc };
}

async function storedDoc(relay: TestRelay, name: string): Promise<Y.Doc> {
  const stored = await relay.relay.store.load(name);
  const copy = new Y.Doc();
  for (const u of stored.updates) Y.applyUpdate(copy, u);
  return copy;
}

/** The sample with exactly this name and labels in Prometheus text, or undefined. */
function metric(text: string, sample: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return undefined;
}

/** GET with the path sent exactly as given (a WHATWG URL, so fetch, would normalize `%2e%2e` away). */
function rawGet(base: string, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(base);
    const req = http.get({ hostname, port, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, body: res.headers['content-type']?.includes('json') ? JSON.parse(text) : text });
      });
    });
    req.on('error', reject);
  });
}

/** POSTs `body` as binary. */
const post = (url: string, body: Uint8Array, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': 'application/octet-stream', ...headers } });

describe('relay HTTP API', () => {
  let relay: TestRelay;
  const clients: ProtocolClient[] = [];
  const connect = async (doc: string) => {
    const c = await ProtocolClient.synced(relay.docUrl(doc));
    clients.push(c);
    return c;
  };
  const docUrl = (name: string, suffix = '') => `${relay.httpUrl}/v1/docs/${encodeURIComponent(name)}${suffix}`;

  beforeEach(async () => {
    relay = await startRelay();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await relay.dispose();
  });

  it('GET /healthz answers 200', async () => {
    const res = await fetch(`${relay.httpUrl}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', relayId: expect.stringMatching(/^relay-/) });
  });

  it('GET /readyz answers 200 while storage works', async () => {
    const res = await fetch(`${relay.httpUrl}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready' });
  });

  describe('GET /metrics', () => {
    const names = [
      'capsync_connections',
      'capsync_docs_loaded',
      'capsync_messages_in_total',
      'capsync_bytes_in_total',
      'capsync_update_apply_seconds',
      'capsync_persist_seconds',
      'capsync_ack_latency_seconds',
      'capsync_refusals_total',
    ];

    it('serves the relay metrics as Prometheus text', async () => {
      const res = await fetch(`${relay.httpUrl}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      for (const name of names) expect(text, name).toMatch(new RegExp(`^# TYPE ${name} (gauge|counter|histogram)$`, 'm'));
    });

    it('moves with traffic', async () => {
      const before = await (await fetch(`${relay.httpUrl}/metrics`)).text();
      expect(metric(before, 'capsync_connections')).toBe(0);
      expect(metric(before, 'capsync_docs_loaded')).toBe(0);
      expect(metric(before, 'capsync_bytes_in_total')).toBe(0);

      const a = await connect('metered');
      await a.waitForAck(a.type('one'));
      await a.waitForAck(a.type('two'));
      const after = await (await fetch(`${relay.httpUrl}/metrics`)).text();
      expect(metric(after, 'capsync_connections')).toBe(1);
      expect(metric(after, 'capsync_docs_loaded')).toBe(1);
      expect(metric(after, 'capsync_messages_in_total{type="update"}')).toBe(2);
      expect(metric(after, 'capsync_messages_in_total{type="hello"}')).toBe(1);
      expect(metric(after, 'capsync_bytes_in_total')).toBeGreaterThan(0);
      for (const histogram of ['capsync_update_apply_seconds', 'capsync_persist_seconds', 'capsync_ack_latency_seconds']) {
        expect(metric(after, `${histogram}_count`), histogram).toBeGreaterThanOrEqual(2);
      }
    });
  });

  describe('GET /v1/docs/:name', () => {
    it('returns the JSON of text, map and array content written over WebSocket', async () => {
      const a = await connect('rich');
      a.doc.transact(() => {
        a.doc.getText('t').insert(0, 'some text');
        const m = a.doc.getMap('m');
        m.set('n', 1);
        m.set('s', 'two');
        const nested = new Y.Map<unknown>();
        nested.set('deep', true);
        m.set('nested', nested);
        a.doc.getArray('list').push([1, 'two', { three: 3 }]);
      });
      await a.waitForAck(a.seq);

      const res = await fetch(docUrl('rich'));
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        t: 'some text',
        m: { n: 1, s: 'two', nested: { deep: true } },
        list: [1, 'two', { three: 3 }],
      });
    });

    it('returns {} for a document nobody wrote', async () => {
      const res = await fetch(docUrl('never-written'));
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({});
    });

    it('serves a document from storage after a restart', async () => {
      const a = await connect('persisted');
      await a.waitForAck(a.type('kept'));
      await Promise.all(clients.splice(0).map((c) => c.close()));
      await relay.close();
      const second = await startRelay({ dataDir: relay.dataDir });
      try {
        expect(await (await fetch(`${second.httpUrl}/v1/docs/persisted`)).json()).toEqual({ t: 'kept' });
      } finally {
        await second.dispose();
      }
    });
  });

  it('GET /v1/docs/:name/update returns bytes that reproduce the document', async () => {
    const a = await connect('binary');
    a.type('hello');
    a.doc.getMap('m').set('k', 'v');
    await a.waitForAck(a.seq);

    const res = await fetch(docUrl('binary', '/update'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/octet-stream/);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, new Uint8Array(await res.arrayBuffer()));
    expect(copy.getText('t').toString()).toBe('hello');
    expect(copy.getMap('m').toJSON()).toEqual({ k: 'v' });
    expect(Y.encodeStateVector(copy)).toEqual(Y.encodeStateVector(a.doc));
  });

  describe('POST /v1/docs/:name/update', () => {
    it('applies an update durably and broadcasts it to connected clients', async () => {
      const a = await connect('posted');
      const { update, doc } = textUpdate('from http');
      const res = await post(docUrl('posted', '/update'), update);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { durable: boolean; stateVector: string };
      expect(body.durable).toBe(true);
      // The answer comes after the commit: the store has it now.
      expect((await storedDoc(relay, 'posted')).getText('t').toString()).toBe('from http');
      const sv = Y.decodeStateVector(Buffer.from(body.stateVector, 'base64'));
      expect(sv.get(doc.clientID)).toBe(Y.getState(doc.store, doc.clientID));
      await a.waitForText('from http');
    });

    it('merges with content written over WebSocket', async () => {
      const a = await connect('merged');
      await a.waitForAck(a.type('ws;'));
      expect((await post(docUrl('merged', '/update'), textUpdate('http;').update)).status).toBe(200);
      await a.waitFor(() => a.text.length === 8 || undefined, 'both edits');
      const json = (await (await fetch(docUrl('merged'))).json()) as { t: string };
      expect(json.t).toBe(a.text);
    });

    it.each([
      ['random bytes', new TextEncoder().encode('not a yjs update')],
      ['a truncated update', textUpdate('hello world').update.subarray(0, 10)],
    ])('refuses %s with 400 invalid-update and changes nothing', async (_what, body) => {
      const a = await connect('garbage');
      await a.waitForAck(a.type('intact'));
      const res = await post(docUrl('garbage', '/update'), body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid-update');
      expect((await storedDoc(relay, 'garbage')).getText('t').toString()).toBe('intact');
      expect(await (await fetch(docUrl('garbage'))).json()).toEqual({ t: 'intact' });
      expect(a.closeInfo).toBeNull();
    });

    it('refuses an empty body with 400', async () => {
      const res = await fetch(docUrl('empty', '/update'), { method: 'POST' });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: { code: 'invalid-update', message: expect.any(String) } });
    });
  });

  describe('document names', () => {
    it('refuses a .. name with 400 invalid-doc-name', async () => {
      for (const path of ['/v1/docs/%2e%2e', '/v1/docs/%2E%2E/update', '/v1/docs/..%2Fetc']) {
        const res = await rawGet(relay.httpUrl, path);
        expect(res.status, path).toBe(400);
        expect(res.body, path).toMatchObject({ error: { code: 'invalid-doc-name' } });
      }
    });

    it('refuses over-long, path-like and control-character names with 400 invalid-doc-name', async () => {
      for (const name of ['a'.repeat(MAX_DOC_NAME_BYTES + 1), '/abs', 'trailing/', 'a//b', 'nul\u0000', 'back\\slash']) {
        const res = await fetch(docUrl(name));
        expect(res.status, name).toBe(400);
        expect(await res.json(), name).toMatchObject({ error: { code: 'invalid-doc-name' } });
        const posted = await post(docUrl(name, '/update'), textUpdate('x').update);
        expect(posted.status, name).toBe(400);
      }
      expect((await fetch(docUrl('a'.repeat(MAX_DOC_NAME_BYTES)))).status).toBe(200);
    });

    it('regression: a malformed percent-escape answers 400 invalid-doc-name, not 500', async () => {
      const res = await rawGet(relay.httpUrl, '/v1/docs/%E0%A4%A');
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ error: { code: 'invalid-doc-name' } });
    });
  });

  it('GET /readyz answers 503 once storage is closed', async () => {
    const broken = await startRelay();
    try {
      await broken.relay.store.close();
      const res = await fetch(`${broken.httpUrl}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'storage-unavailable' });
      expect((await fetch(`${broken.httpUrl}/healthz`)).status).toBe(200);
    } finally {
      await broken.dispose();
    }
  });

  it('POST over maxMessageBytes answers 413 message-too-large', async () => {
    const small = await startRelay({ maxMessageBytes: 1024 });
    try {
      const url = `${small.httpUrl}/v1/docs/big/update`;
      const res = await post(url, textUpdate('x'.repeat(4096)).update);
      expect(res.status).toBe(413);
      expect(await res.json()).toEqual({ error: { code: 'message-too-large', message: expect.stringContaining('1024') } });
      expect((await small.relay.store.load('big')).updates).toEqual([]);
      expect((await post(url, textUpdate('fits').update)).status).toBe(200);
    } finally {
      await small.dispose();
    }
  });
});

describe('relay HTTP API with auth', () => {
  let relay: TestRelay;
  const url = (name: string, suffix = '') => `${relay.httpUrl}/v1/docs/${encodeURIComponent(name)}${suffix}`;
  const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

  beforeEach(async () => {
    relay = await startRelay({ authSecret: SECRET });
  });
  afterEach(async () => {
    await relay.dispose();
  });

  it('answers 401 unauthorized to document routes without a token, while probes stay open', async () => {
    const res = await fetch(url('doc'));
    expect(res.status).toBe(401);
    expect(await errorCode(res)).toBe('unauthorized');
    expect((await fetch(url('doc', '/update'))).status).toBe(401);
    expect((await post(url('doc', '/update'), textUpdate('x').update)).status).toBe(401);
    // Probes stay open.
    expect((await fetch(`${relay.httpUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${relay.httpUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${relay.httpUrl}/metrics`)).status).toBe(200);
  });

  it('answers 401 for an expired token, saying so', async () => {
    const token = await sign({ doc: 'read' }, { exp: Math.floor(Date.now() / 1000) - 60 });
    const res = await fetch(url('doc'), { headers: { Authorization: `Bearer ${token}` } });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: { code: 'unauthorized', message: expect.stringMatching(/expired/) } });
  });

  it('lets a read token GET but answers 403 read-only to its POST', async () => {
    const token = await sign({ doc: 'read' });
    expect((await fetch(`${url('doc')}?token=${token}`)).status).toBe(200);
    const res = await post(`${url('doc', '/update')}?token=${token}`, textUpdate('nope').update);
    expect(res.status).toBe(403);
    expect(await errorCode(res)).toBe('read-only');
    expect((await relay.relay.store.load('doc')).updates).toEqual([]);
  });

  it('accepts a Bearer header for GET and POST', async () => {
    const headers = { Authorization: `Bearer ${await sign({ doc: 'write' })}` };
    expect((await post(url('doc', '/update'), textUpdate('via bearer').update, headers)).status).toBe(200);
    const res = await fetch(url('doc'), { headers });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ t: 'via bearer' });
  });

  it('serves names containing / when encoded as %2F, under prefix patterns, as the same document as WebSocket', async () => {
    const token = await sign({ 'team/*': 'write' });
    const headers = { Authorization: `Bearer ${token}` };
    const ws = await ProtocolClient.synced(`${relay.docUrl('team/notes')}?token=${token}`);
    try {
      const res = await post(`${relay.httpUrl}/v1/docs/team%2Fnotes/update`, textUpdate('shared').update, headers);
      expect(res.status).toBe(200);
      await ws.waitForText('shared');
      expect(await (await fetch(`${relay.httpUrl}/v1/docs/team%2Fnotes`, { headers })).json()).toEqual({ t: 'shared' });
      expect((await fetch(`${relay.httpUrl}/v1/docs/other%2Fnotes`, { headers })).status).toBe(403);
    } finally {
      await ws.close();
    }
  });

  it('answers 403 forbidden to a token without access, and counts the refusals', async () => {
    const token = await sign({ other: 'write' });
    const metricsText = async () => (await fetch(`${relay.httpUrl}/metrics`)).text();
    expect(metric(await metricsText(), 'capsync_refusals_total{reason="forbidden"}')).toBeUndefined();

    const res = await fetch(url('doc'), { headers: { Authorization: `Bearer ${token}` } });
    expect(res.status).toBe(403);
    expect(await errorCode(res)).toBe('forbidden');
    expect(metric(await metricsText(), 'capsync_refusals_total{reason="forbidden"}')).toBe(1);

    const refused = await ProtocolClient.connect(`${relay.docUrl('doc')}?token=${token}`);
    expect((await refused.waitClosed()).code).toBe(4403);
    expect(metric(await metricsText(), 'capsync_refusals_total{reason="forbidden"}')).toBe(2);
  });
});

describe('static files', () => {
  it('serves a static directory at / next to the API and WebSocket endpoint', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const { tempDir } = await import('../support/relay-fixture.js');
    const site = tempDir('capsync-static-');
    fs.writeFileSync(path.join(site.dir, 'index.html'), '<h1>editor</h1>');
    const relay = await startRelay({ staticDir: site.dir });
    try {
      const index = await fetch(`${relay.httpUrl}/`);
      expect(index.status).toBe(200);
      expect(await index.text()).toBe('<h1>editor</h1>');
      expect((await fetch(`${relay.httpUrl}/healthz`)).status).toBe(200);
      expect((await fetch(`${relay.httpUrl}/missing.js`)).status).toBe(404);
      const client = await ProtocolClient.synced(relay.docUrl('index.html'));
      await client.close();
    } finally {
      await relay.dispose();
      site.remove();
    }
  });
});
