import { describe, expect, it } from 'vitest';
import { CloseCode, MAX_SUBDOC_GUID_LENGTH, errorCodeFromReason, subdocStorageName } from '@capsync/core';
import { startAttackedRelay } from '../support/attack.js';
import { MuxClient, type MuxDocSession } from '../support/mux-client.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { metricValue, waitForMetricTo } from '../support/relay-observe.js';
import { mintToken } from '../support/tokens.js';

/**
 * Issue 12 P6, relay side, at the wire level against a real relay process: a Yjs subdocument is
 * a session of its own on the multiplexed socket (`session-open` with the subdocument's guid),
 * stored under a reserved name no client can open directly, authorized with its parent's
 * permission, loaded only when a session opens it; a hostile guid is refused on its own (4404).
 */

const SECRET = 'mux-subdocs-secret';

async function typed(s: MuxDocSession, text: string): Promise<void> {
  await s.waitForAck(s.type(text));
}

describe('multiplexed endpoint: subdocuments', () => {
  it('a subdocument syncs under its guid, apart from its parent and from the same guid under another parent; loaded only when opened', async () => {
    await using relay = await startAttackedRelay();
    const a = await MuxClient.connect(relay.url);
    const b = await MuxClient.connect(relay.url);
    const [parentA, subA] = await Promise.all([a.synced('notes'), a.synced('notes', { subdoc: 'page-1' })]);
    expect(await metricValue(relay.httpUrl, 'capsync_docs_loaded')).toBe(2);
    const [parentB, subB, otherB] = await Promise.all([b.synced('notes'), b.synced('notes', { subdoc: 'page-1' }), b.synced('other', { subdoc: 'page-1' })]);
    await typed(subA, 'in the page');
    await typed(parentA, 'in the parent');
    await subB.waitForText('in the page');
    await parentB.waitForText('in the parent');
    expect(subB.text).toBe('in the page');
    expect(otherB.text).toBe('');
    expect(await metricValue(relay.httpUrl, 'capsync_connections')).toBe(5);
    expect(await metricValue(relay.httpUrl, 'capsync_docs_loaded')).toBe(3);
    await a.close();
    await b.close();

    // Stored under the reserved name, and read back from storage by a later session.
    const c = await MuxClient.connect(relay.url);
    const again = await c.synced('notes', { subdoc: 'page-1' });
    expect(again.text).toBe('in the page');
    // No client reaches that name directly: not on the plain endpoint, not as a mux name, not over HTTP.
    const stored = subdocStorageName('notes', 'page-1');
    const direct = await ProtocolClient.connect(`${relay.url}/${encodeURIComponent(stored)}`);
    expect((await direct.waitClosed()).code).toBe(CloseCode.InvalidDocName);
    const byName = c.open(stored);
    expect((await byName.waitClosed()).code).toBe(CloseCode.InvalidDocName);
    const http = await fetch(`${relay.httpUrl}/v1/docs/${encodeURIComponent(stored)}`);
    expect(http.status).toBe(400);
    expect(((await http.json()) as { error: { code: string } }).error.code).toBe('invalid-doc-name');
    await c.close();
  });

  it("a subdocument has its parent's permission: refused on its own (4403) where the parent is, read-only where it is", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const token = await mintToken(SECRET, { sub: 'alice', docs: { 'team/*': 'write', handbook: 'read' } });
    const mux = await MuxClient.connect(relay.url, { token });
    const secret = mux.open('private/x', { subdoc: 'page-1' });
    const readOnly = mux.open('handbook', { subdoc: 'page-1' });
    const writable = mux.open('team/a', { subdoc: 'page-1' });
    expect(await secret.waitClosed()).toMatchObject({ code: CloseCode.Forbidden });
    expect(errorCodeFromReason(secret.closeInfo!.reason)).toBe('forbidden');
    expect(await readOnly.waitOpened()).toBe('read');
    expect(await writable.waitOpened()).toBe('write');
    await writable.waitSynced();
    await typed(writable, 'allowed');
    readOnly.type('nope');
    expect((await readOnly.waitFor(() => readOnly.errors[0], 'read-only error')).code).toBe('read-only');
    // A token for the reserved name itself gives nothing: the parent's claim decides.
    const sneaky = await mintToken(SECRET, { sub: 'mallory', docs: { '.capsync/*': 'write' } });
    const other = await MuxClient.connect(relay.url, { token: sneaky });
    const refused = other.open('team/a', { subdoc: 'page-1' });
    expect((await refused.waitClosed()).code).toBe(CloseCode.Forbidden);
    await other.close();
    expect(mux.closeInfo).toBeNull();
    await mux.close();
  });

  it('hostile guids are refused on their own with 4404 invalid-doc-name; the socket and its other sessions carry on', async () => {
    await using relay = await startAttackedRelay();
    const mux = await MuxClient.connect(relay.url);
    const good = await mux.synced('notes', { subdoc: 'fine-guid' });
    const hostile = ['.', '..', '.hidden', 'a/b', '../../etc/passwd', 'x'.repeat(MAX_SUBDOC_GUID_LENGTH + 1), 'nul\u0000', 'é', ' ', 'a?b', '%2e%2e', 'x'.repeat(100_000)];
    for (const guid of hostile) {
      const s = mux.open('notes', { subdoc: guid });
      const closed = await s.waitClosed();
      expect(closed.code, JSON.stringify(guid.slice(0, 20))).toBe(CloseCode.InvalidDocName);
      expect(errorCodeFromReason(closed.reason)).toBe('invalid-doc-name');
      // The reason names the guid shortened: a hostile guid does not come back whole.
      expect(closed.reason.length).toBeLessThan(250);
    }
    // A bad parent name is refused as for a document.
    expect((await mux.open('.capsync/locks', { subdoc: 'g' }).waitClosed()).code).toBe(CloseCode.InvalidDocName);
    expect((await mux.open('', { subdoc: 'g' }).waitClosed()).code).toBe(CloseCode.InvalidDocName);
    await typed(good, 'unaffected');
    expect(mux.closeInfo).toBeNull();
    expect(await metricValue(relay.httpUrl, 'capsync_refusals_total', { reason: 'invalid-doc-name' })).toBeGreaterThanOrEqual(hostile.length);
    expect(await metricValue(relay.httpUrl, 'capsync_docs_loaded')).toBe(1);
    await mux.close();
  });

  it('one session per (parent, guid) per socket (4400); subdocument sessions count against --max-sessions-per-socket', async () => {
    await using relay = await startAttackedRelay(['--max-sessions-per-socket', '3']);
    const mux = await MuxClient.connect(relay.url);
    await Promise.all([mux.synced('notes'), mux.synced('notes', { subdoc: 'p1' })]);
    const twice = mux.open('notes', { subdoc: 'p1' });
    expect((await twice.waitClosed()).code).toBe(CloseCode.BadMessage);
    const third = await mux.synced('notes', { subdoc: 'p2' });
    const over = mux.open('notes', { subdoc: 'p3' });
    const closed = await over.waitClosed();
    expect(closed.code).toBe(CloseCode.LimitExceeded);
    expect(closed.reason).toMatch(/^limit-exceeded: max-sessions-per-socket/);
    await third.close();
    await typed(await mux.synced('notes', { subdoc: 'p3' }), 'fits now');
    await mux.close();
    await waitForMetricTo(relay.httpUrl, 'capsync_connections', {}, (v) => v === 0, '= 0');
  });
});
