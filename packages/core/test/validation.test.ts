import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import {
  CloseCode,
  closeCodeFor,
  closeReasonFor,
  decodeAwarenessUpdate,
  docNameFromPath,
  docToJSON,
  errorCodeFromReason,
  isEmptyUpdate,
  validateDocName,
  validateUpdate,
} from '@capsync/core';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('document names', () => {
  it.each(['notes', 'team/a/notes', 'ünïcødé 文档', 'a.b', '...x', 'x'.repeat(512)])('accepts %s', (name) => {
    expect(validateDocName(name)).toBe(name);
  });
  it.each([
    ['empty', ''],
    ['over-long', 'x'.repeat(513)],
    ['dot-dot segment', '../etc/passwd'],
    ['inner dot-dot', 'a/../b'],
    ['dot segment', 'a/./b'],
    ['leading slash', '/abs'],
    ['trailing slash', 'dir/'],
    ['empty segment', 'a//b'],
    ['backslash', 'a\\..\\b'],
    ['control char', 'a\u0000b'],
    ['newline', 'a\nb'],
  ])('refuses %s', (_why, name) => {
    expect(codeOf(() => validateDocName(name))).toBe('invalid-doc-name');
  });
  it('decodes names from request paths', () => {
    expect(docNameFromPath('/my%20doc?token=x')).toBe('my doc');
    expect(docNameFromPath('/team/notes')).toBe('team/notes');
    expect(codeOf(() => docNameFromPath('/%E0%A4%A'))).toBe('invalid-doc-name');
    expect(codeOf(() => docNameFromPath('/%2e%2e/secret'))).toBe('invalid-doc-name');
    expect(codeOf(() => docNameFromPath('/'))).toBe('invalid-doc-name');
  });
});

describe('update validation', () => {
  const doc = new Y.Doc();
  doc.getText('t').insert(0, 'hello world');
  const good = Y.encodeStateAsUpdate(doc);

  it('accepts a real update', () => expect(() => validateUpdate(good)).not.toThrow());
  it('refuses every truncation of a real update', () => {
    for (let n = 1; n < good.length - 1; n++) {
      expect(codeOf(() => validateUpdate(good.subarray(0, n))), `prefix of ${n} bytes`).toBe('invalid-update');
    }
  });
  it('refuses garbage', () => expect(codeOf(() => validateUpdate(new Uint8Array([5, 200, 1, 2, 3])))).toBe('invalid-update'));
  it('recognizes the empty update', () => {
    expect(isEmptyUpdate(Y.encodeStateAsUpdate(new Y.Doc()))).toBe(true);
    expect(isEmptyUpdate(good)).toBe(false);
  });
});

describe('awareness updates', () => {
  it('decodes a real awareness update', () => {
    const doc = new Y.Doc();
    const a = new awarenessProtocol.Awareness(doc);
    a.setLocalState({ user: 'ann' });
    const entries = decodeAwarenessUpdate(awarenessProtocol.encodeAwarenessUpdate(a, [doc.clientID]));
    expect(entries).toEqual([{ clientID: doc.clientID, clock: 1, state: { user: 'ann' }, stateBytes: '{"user":"ann"}'.length }]);
    a.destroy();
  });
  it('refuses invalid JSON and trailing bytes', () => {
    expect(codeOf(() => decodeAwarenessUpdate(new Uint8Array([1, 1, 1, 3, 123, 123, 123])))).toBe('invalid-awareness');
    expect(codeOf(() => decodeAwarenessUpdate(new Uint8Array([0, 9])))).toBe('invalid-awareness');
  });
});

describe('close codes', () => {
  it('maps error codes to named close codes and back', () => {
    expect(closeCodeFor('invalid-update')).toBe(CloseCode.InvalidUpdate);
    expect(closeCodeFor('text-frame')).toBe(CloseCode.UnsupportedData);
    const reason = closeReasonFor('forbidden', 'x'.repeat(500));
    expect(new TextEncoder().encode(reason).length).toBeLessThanOrEqual(123);
    expect(errorCodeFromReason(reason)).toBe('forbidden');
  });
});

describe('docToJSON', () => {
  it('infers the kind of types a relay never declared', () => {
    const src = new Y.Doc();
    src.getText('text').insert(0, 'hi');
    src.getMap('map').set('k', 1);
    src.getArray('list').push([1, 'two']);
    src.getXmlFragment('xml').insert(0, [new Y.XmlElement('p')]);
    const relay = new Y.Doc();
    Y.applyUpdate(relay, Y.encodeStateAsUpdate(src));
    expect(docToJSON(relay)).toEqual({ text: 'hi', map: { k: 1 }, list: [1, 'two'], xml: '<p></p>' });
  });

  it('renders nested types and JSON values as Yjs does, keys in order', () => {
    const src = new Y.Doc();
    const map = src.getMap('map');
    const inner = new Y.Map<unknown>();
    map.set('b', 1);
    map.set('a', inner);
    inner.set('list', Y.Array.from([1, { x: [2, { y: 3 }] }, new Uint8Array([1])]));
    inner.set('text', new Y.Text('t'));
    const relay = new Y.Doc();
    Y.applyUpdate(relay, Y.encodeStateAsUpdate(src));
    const json = docToJSON(relay);
    expect(json).toEqual({ map: src.getMap('map').toJSON() });
    expect(Object.keys(json['map'] as object)).toEqual(Object.keys(src.getMap('map').toJSON()));
  });

  it('throws too-deep instead of overflowing the stack on a 20,000-deep map (attack 5 of issue 11)', () => {
    const src = new Y.Doc();
    src.transact(() => {
      let m = src.getMap('root');
      for (let i = 0; i < 20_000; i++) {
        const child = new Y.Map<unknown>();
        m.set('k', child);
        m = child;
      }
    });
    const relay = new Y.Doc();
    Y.applyUpdate(relay, Y.encodeStateAsUpdate(src));
    expect(() => docToJSON(relay)).toThrow(expect.objectContaining({ code: 'too-deep' }));
    expect(() => docToJSON(relay, { maxDepth: 30_000 })).not.toThrow();
    const shallow = new Y.Doc();
    shallow.getMap('m').set('a', { b: { c: 1 } });
    expect(docToJSON(shallow, { maxDepth: 3 })).toEqual({ m: { a: { b: { c: 1 } } } });
    expect(() => docToJSON(shallow, { maxDepth: 2 })).toThrow(expect.objectContaining({ code: 'too-deep' }));
  });

  it('caps XML element depth too', () => {
    const src = new Y.Doc();
    let el: Y.XmlFragment = src.getXmlFragment('xml');
    for (let i = 0; i < 5; i++) {
      const child = new Y.XmlElement('p');
      el.insert(0, [child]);
      el = child;
    }
    expect(docToJSON(src, { maxDepth: 6 })['xml']).toBe('<p><p><p><p><p></p></p></p></p></p>');
    expect(() => docToJSON(src, { maxDepth: 5 })).toThrow(expect.objectContaining({ code: 'too-deep' }));
  });
});
