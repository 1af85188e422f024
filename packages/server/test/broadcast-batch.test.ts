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
    Y.applyUpdate(atC, forRecipient('c')!);
    expect(atC.getText('t').toString().length).toBe(4);

    const atA = new Y.Doc();
    Y.applyUpdate(atA, forRecipient('a')!);
    expect(atA.getText('t').toString()).toBe('B');

    const atB = new Y.Doc();
    Y.applyUpdate(atB, forRecipient('b')!);
    expect(atB.getText('t').toString()).toBe('AA2');
  });

  it('forwards a lone update as is and sends a source nothing of its own', () => {
    const batch = new BroadcastBatch<string>();
    const u = edit(new Y.Doc(), 'x');
    batch.add(u, 'a');
    const forRecipient = batch.take();
    expect(forRecipient('b')).toBe(u);
    expect(forRecipient('a')).toBeNull();
  });
});
