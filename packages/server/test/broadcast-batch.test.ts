import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { BroadcastBatch } from '../src/relay/broadcast-batch.js';

function edit(doc: Y.Doc, text: string): Uint8Array {
  let update: Uint8Array | undefined;
  doc.once('update', (u: Uint8Array) => (update = u));
  doc.getText('t').insert(doc.getText('t').length, text);
  return update!;
}

describe('BroadcastBatch', () => {
  it('gives each recipient everything but its own updates, merged into one', () => {
    const [a, b] = [new Y.Doc(), new Y.Doc()];
    const batch = new BroadcastBatch<string>();
    const ua = edit(a, 'A');
    batch.add(ua, 'a');
    batch.add(edit(b, 'B'), 'b');
    batch.add(edit(a, 'A2'), 'a');
    const forRecipient = batch.take();
    expect(batch.size).toBe(0);

    const atC = new Y.Doc();
    Y.applyUpdate(atC, forRecipient('c', true)!);
    expect(atC.getText('t').toString().length).toBe(4);

    const atA = new Y.Doc();
    Y.applyUpdate(atA, forRecipient('a', true)!);
    expect(atA.getText('t').toString()).toBe('B');

    const atB = new Y.Doc();
    Y.applyUpdate(atB, forRecipient('b', true)!);
    expect(atB.getText('t').toString()).toBe('AA2');
  });

  it('forwards a lone update as is and sends a source nothing of its own', () => {
    const batch = new BroadcastBatch<string>();
    const u = edit(new Y.Doc(), 'x');
    batch.add(u, 'a');
    const forRecipient = batch.take();
    expect(forRecipient('b', true)).toBe(u);
    expect(forRecipient('a', true)).toBeNull();
    expect(forRecipient('a', false)).toBeNull();
  });

  it('in a turn with three sources or more, gives a client everything (one merge for all) and a relay peer everything but its own', () => {
    const docs = [new Y.Doc(), new Y.Doc(), new Y.Doc()];
    const batch = new BroadcastBatch<string>();
    docs.forEach((d, i) => batch.add(edit(d, `${i}`), `s${i}`));
    const forRecipient = batch.take();
    const all = forRecipient('other', true)!;
    // The client that sent s0 gets the same bytes as everyone: no merge of its own.
    expect(forRecipient('s0', true)).toBe(all);
    expect(forRecipient('s1', true)).toBe(all);
    const atClient = new Y.Doc();
    Y.applyUpdate(atClient, all);
    expect(atClient.getText('t').length).toBe(3);
    // A relay peer (echo not tolerated) never gets its own content back.
    const atPeer = new Y.Doc();
    Y.applyUpdate(atPeer, forRecipient('s2', false)!);
    expect(atPeer.getText('t').toString().split('').sort().join('')).toBe('01');
  });

  it('counts a change made on the relay as a source; echoes only small own changes; two sources never echo', () => {
    const batch = new BroadcastBatch<string>();
    const a = edit(new Y.Doc(), 'a');
    const big = edit(new Y.Doc(), 'x'.repeat(2_000));
    batch.add(a, 'a');
    batch.add(big, 'big');
    batch.add(edit(new Y.Doc(), 'r'), null); // made on the relay itself: a third source
    const forRecipient = batch.take();
    const all = forRecipient('c', true)!;
    expect(forRecipient('a', true)).toBe(all);
    // Over ECHO_MAX_BYTES of its own: everything but its own, merged for it.
    const forBig = forRecipient('big', true)!;
    expect(forBig).not.toBe(all);
    const atBig = new Y.Doc();
    Y.applyUpdate(atBig, forBig);
    expect(atBig.getText('t').length).toBe(2);

    const two = new BroadcastBatch<string>();
    const u1 = edit(new Y.Doc(), '1');
    const u2 = edit(new Y.Doc(), '2');
    two.add(u1, 's1');
    two.add(u2, 's2');
    const forTwo = two.take();
    // Each gets the other's update as is: no merge, no echo.
    expect(forTwo('s1', true)).toBe(u2);
    expect(forTwo('s2', true)).toBe(u1);
  });
});
