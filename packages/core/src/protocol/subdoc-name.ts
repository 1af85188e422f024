import { ProtocolError } from '../errors.js';
import { validateDocName } from './doc-name.js';

/** Longest Yjs subdocument guid accepted (Yjs makes 36-character UUIDs; apps may choose their own). */
export const MAX_SUBDOC_GUID_LENGTH = 128;

/**
 * Where the relay keeps subdocuments: `.capsync/sub/<encodeURIComponent(parent)>/<guid>`.
 * Under `.capsync/`, so no client can open (or read over HTTP) one directly: `validateDocName`
 * refuses every such name. A client reaches it only as a subdocument session of its parent
 * (session-open with `subdoc`), authorized with the parent's permission; peer relays open it
 * by this name.
 */
export const SUBDOC_PREFIX = '.capsync/sub/';

const GUID_CHARS = /^[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$/;

/**
 * Validates a subdocument guid and returns it: 1 to MAX_SUBDOC_GUID_LENGTH characters of
 * `A-Z a-z 0-9 _ . : -`, not starting with '.' (no '.' or '..', nothing path-like). A guid the
 * relay stores under is as hostile as a document name. Throws `ProtocolError('invalid-doc-name')`
 * (close code 4404).
 */
export function validateSubdocGuid(guid: string): string {
  if (guid.length === 0 || guid.length > MAX_SUBDOC_GUID_LENGTH || !GUID_CHARS.test(guid)) {
    const shown = guid.length > 40 ? `${guid.slice(0, 40)}…` : guid;
    throw new ProtocolError(
      'invalid-doc-name',
      `invalid subdocument guid ${JSON.stringify(shown)}: 1 to ${MAX_SUBDOC_GUID_LENGTH} characters of A-Z a-z 0-9 _ . : -, not starting with '.'`,
    );
  }
  return guid;
}

/** The relay's storage name of subdocument `guid` of document `parent` (both validated; throws as they do). */
export function subdocStorageName(parent: string, guid: string): string {
  return `${SUBDOC_PREFIX}${encodeURIComponent(validateDocName(parent))}/${validateSubdocGuid(guid)}`;
}

/**
 * The parent and guid of a relay storage name made by `subdocStorageName`, or null for any other
 * name (a user document, another reserved name, or a malformed subdocument name).
 */
export function parseSubdocStorageName(name: string): { parent: string; guid: string } | null {
  if (!name.startsWith(SUBDOC_PREFIX)) return null;
  const rest = name.slice(SUBDOC_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return null;
  try {
    const parent = decodeURIComponent(rest.slice(0, slash));
    const guid = rest.slice(slash + 1);
    // Only the one spelling subdocStorageName makes: two names must not reach one document.
    return subdocStorageName(parent, guid) === name ? { parent, guid } : null;
  } catch {
    return null;
  }
}
