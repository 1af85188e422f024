import { describe, expect, it } from 'vitest';
import { MAX_SUBDOC_GUID_LENGTH, parseSubdocStorageName, subdocStorageName, validateDocName, validateSubdocGuid } from '../src/index.js';

describe('subdocument names', () => {
  it('stores a subdocument under a reserved name that round-trips, for any valid parent', () => {
    for (const parent of ['notes', 'team/a/b', 'with space', 'ünïcödé', 'a%2Fb', 'x'.repeat(512)]) {
      const name = subdocStorageName(parent, 'page-1');
      expect(name.startsWith('.capsync/sub/')).toBe(true);
      expect(() => validateDocName(name)).toThrow(expect.objectContaining({ code: 'invalid-doc-name' }));
      expect(parseSubdocStorageName(name)).toEqual({ parent, guid: 'page-1' });
    }
    // A parent's slashes are escaped: 'a/b' + 'c' and 'a' + 'b' stay apart from each other's children.
    expect(subdocStorageName('a/b', 'c')).toBe('.capsync/sub/a%2Fb/c');
  });

  it('takes Yjs guids and refuses hostile ones with invalid-doc-name', () => {
    expect(validateSubdocGuid('0f8fad5b-d9cb-469f-a165-70867728950e')).toBeTruthy();
    expect(validateSubdocGuid('page:1_a.b')).toBe('page:1_a.b');
    expect(validateSubdocGuid('x'.repeat(MAX_SUBDOC_GUID_LENGTH))).toHaveLength(MAX_SUBDOC_GUID_LENGTH);
    for (const guid of ['', '.', '..', '.x', 'a/b', 'a\\b', 'nul\u0000', 'é', ' ', 'a?b', '%2e', 'x'.repeat(MAX_SUBDOC_GUID_LENGTH + 1)]) {
      expect(() => validateSubdocGuid(guid), JSON.stringify(guid.slice(0, 10))).toThrow(expect.objectContaining({ code: 'invalid-doc-name' }));
    }
    expect(() => subdocStorageName('.capsync/locks', 'g')).toThrow(expect.objectContaining({ code: 'invalid-doc-name' }));
  });

  it('reads back only the one spelling it makes', () => {
    for (const name of ['notes', '.capsync/sub/', '.capsync/sub/notes', '.capsync/sub/notes/', '.capsync/sub/notes/a/b', '.capsync/sub/%E0%A4%A/g', '.capsync/sub/team/a/g', '.capsync/sub/t%65am/g', '.capsync/sub/%2Ecapsync%2Flocks/g']) {
      expect(parseSubdocStorageName(name), name).toBeNull();
    }
  });
});
