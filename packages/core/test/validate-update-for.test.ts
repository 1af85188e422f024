import { describe, expect, it } from 'vitest';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { validateUpdateFor } from '@capsync/core';

/** A document with "abc" typed by client 1 (clocks 0..2). */
function baseDoc(): Y.Doc {
  const doc = new Y.Doc();
  doc.clientID = 1;
  doc.getText('t').insert(0, 'abc');
  return doc;
}

/**
 * Hand-encodes a v1 update holding one string item of `client` at `clock`, with an optional
 * origin and a parent given either as a root name or as an item id, plus a delete set.
 */
function craft(opts: {
  client: number;
  clock: number;
  origin?: Y.ID;
  parent?: { name: string } | { id: Y.ID; sub?: string };
  deletes?: { client: number; clock: number; len: number }[];
}): Uint8Array {
  const enc = new Y.UpdateEncoderV1();
  encoding.writeVarUint(enc.restEncoder, 1);
  encoding.writeVarUint(enc.restEncoder, 1);
  enc.writeClient(opts.client);
  encoding.writeVarUint(enc.restEncoder, opts.clock);
  const hasParentSub = opts.parent && 'sub' in opts.parent && opts.parent.sub !== undefined;
  enc.writeInfo(4 | (opts.origin ? 0x80 : 0) | (hasParentSub ? 0x20 : 0));
  if (opts.origin) enc.writeLeftID(opts.origin);
  if (!opts.origin) {
    const parent = opts.parent ?? { name: 't' };
    if ('name' in parent) {
      enc.writeParentInfo(true);
      enc.writeString(parent.name);
    } else {
      enc.writeParentInfo(false);
      enc.writeLeftID(parent.id);
      if (parent.sub !== undefined) enc.writeString(parent.sub);
    }
  }
  enc.writeString('x');
  const deletes = opts.deletes ?? [];
  encoding.writeVarUint(enc.restEncoder, deletes.length);
  for (const d of deletes) {
    encoding.writeVarUint(enc.restEncoder, d.client);
    encoding.writeVarUint(enc.restEncoder, 1);
    encoding.writeVarUint(enc.restEncoder, d.clock);
    encoding.writeVarUint(enc.restEncoder, d.len);
  }
  return enc.toUint8Array();
}

/** The error code, with ':forged' when refused by the semantic checks rather than decoding. */
const codeOf = (fn: () => void) => {
  try {
    fn();
  } catch (err) {
    const { code, message } = err as { code?: string; message: string };
    return message.includes('forged or corrupt') ? `${code}:forged` : code;
  }
  return undefined;
};

describe('validateUpdateFor', () => {
  it('accepts real updates, resends of known content and out-of-order (pending) updates', () => {
    const doc = baseDoc();
    const other = new Y.Doc();
    Y.applyUpdate(other, Y.encodeStateAsUpdate(doc));
    const sv = Y.encodeStateVector(other);
    other.getText('t').insert(1, 'zz');
    const next = Y.encodeStateAsUpdate(other, sv);
    expect(codeOf(() => validateUpdateFor(doc, next))).toBeUndefined();
    expect(codeOf(() => validateUpdateFor(doc, Y.encodeStateAsUpdate(doc)))).toBeUndefined();
    expect(codeOf(() => validateUpdateFor(doc, craft({ client: 7, clock: 0, origin: Y.createID(99, 4) })))).toBeUndefined();
    expect(codeOf(() => validateUpdateFor(doc, craft({ client: 7, clock: 0, parent: { name: 't' } })))).toBeUndefined();
  });

  it('refuses a struct that builds on its own future', () => {
    expect(codeOf(() => validateUpdateFor(baseDoc(), craft({ client: 7, clock: 3, origin: Y.createID(7, 5) })))).toBe('invalid-update:forged');
  });

  it('refuses a parent that is not a shared type', () => {
    expect(codeOf(() => validateUpdateFor(baseDoc(), craft({ client: 7, clock: 0, parent: { id: Y.createID(1, 0), sub: 'k' } })))).toBe(
      'invalid-update:forged',
    );
  });

  it('refuses a struct the document has, claiming a dependency it does not have', () => {
    expect(codeOf(() => validateUpdateFor(baseDoc(), craft({ client: 1, clock: 0, origin: Y.createID(42, 7) })))).toBe('invalid-update:forged');
  });

  it('refuses an empty struct, which would leave the document unable to encode a state that loads back', () => {
    // Found by the relay fuzz (seed 1450851959): a zero-length GC struct, and a deletion range.
    const update = new Uint8Array(Buffer.from('0101d0efa2d401000000016d037375620a7375622d38337f303435760000', 'hex'));
    expect(Y.decodeUpdate(update).structs[0]!.length).toBe(0);
    expect(codeOf(() => validateUpdateFor(baseDoc(), update))).toBe('invalid-update:forged');
    // What it would do: applied anyway, the document's full state no longer loads back.
    const doc = baseDoc();
    Y.applyUpdate(doc, update);
    expect(() => Y.applyUpdate(new Y.Doc(), Y.encodeStateAsUpdate(doc))).toThrow();
  });

  it('refuses empty deletion ranges and clocks past 2^53', () => {
    expect(codeOf(() => validateUpdateFor(baseDoc(), craft({ client: 7, clock: 0, deletes: [{ client: 9, clock: 5, len: 0 }] })))).toBe(
      'invalid-update:forged',
    );
    expect(
      codeOf(() => validateUpdateFor(baseDoc(), craft({ client: 7, clock: 0, deletes: [{ client: 9, clock: 2 ** 53 - 1, len: 5 }] }))),
    ).toBe('invalid-update:forged');
    expect(codeOf(() => validateUpdateFor(baseDoc(), craft({ client: 7, clock: 2 ** 53 - 1, parent: { name: 't' } })))).toBe('invalid-update:forged');
  });
});

describe('edits inside a concurrently deleted nested type', () => {
  it('are accepted once the deleted type was garbage-collected, and integrate like Yjs does', () => {
    const relay = new Y.Doc();
    const a = new Y.Doc();
    const b = new Y.Doc();
    a.getMap('m').set('x', new Y.Map<unknown>());
    Y.applyUpdate(relay, Y.encodeStateAsUpdate(a));
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a));
    // b edits inside x while a deletes x; the relay gets the deletion first and GCs x.
    const edit: Uint8Array[] = [];
    b.on('update', (u: Uint8Array) => edit.push(u));
    (b.getMap('m').get('x') as Y.Map<unknown>).set('k', 1);
    a.getMap('m').delete('x');
    Y.applyUpdate(relay, Y.encodeStateAsUpdate(a, Y.encodeStateVector(relay)));
    expect(() => validateUpdateFor(relay, edit[0]!)).not.toThrow();
    Y.applyUpdate(relay, edit[0]!);
    Y.applyUpdate(a, edit[0]!);
    expect(relay.getMap('m').toJSON()).toEqual({});
    expect(Y.encodeStateVector(relay)).toEqual(Y.encodeStateVector(a));
  });
});
