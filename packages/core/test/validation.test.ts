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
});
