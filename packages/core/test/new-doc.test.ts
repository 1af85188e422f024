import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { newDoc, randomGuid } from '../src/index.js';

describe('newDoc', () => {
  it('makes documents with distinct version 4 UUID guids that sync like any Y.Doc', () => {
    const guids = new Set(Array.from({ length: 1000 }, () => randomGuid()));
    expect(guids.size).toBe(1000);
    for (const g of guids) expect(g).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const a = newDoc({ gc: false });
    expect(a.gc).toBe(false);
    a.getText('t').insert(0, 'x');
    const b = newDoc();
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a));
    expect(b.getText('t').toString()).toBe('x');
    expect(a.guid).not.toBe(b.guid);
  });
});
