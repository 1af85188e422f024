import { ProtocolError } from '../errors.js';

/** Longest document name accepted, in UTF-8 bytes. */
export const MAX_DOC_NAME_BYTES = 512;

/**
 * Validates a document name and returns it unchanged. Names are opaque keys, but since
 * deployments map them to files, URLs and logs, the relay refuses anything path-like or
 * invisible: empty names, names over MAX_DOC_NAME_BYTES, control characters, backslashes,
 * a leading or trailing '/', empty segments ('a//b'), '.' or '..' segments, and names under
 * '.capsync/' (reserved for the relay's own endpoints, such as '.capsync/locks').
 * Throws `ProtocolError('invalid-doc-name')`.
 */
export function validateDocName(name: string): string {
  const fail = (why: string): never => {
    throw new ProtocolError('invalid-doc-name', `invalid document name: ${why}`);
  };
  if (name.length === 0) fail('empty');
  if (new TextEncoder().encode(name).length > MAX_DOC_NAME_BYTES) fail(`longer than ${MAX_DOC_NAME_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) fail('contains control characters');
  if (name.includes('\\')) fail('contains a backslash');
  if (name.startsWith('/') || name.endsWith('/')) fail('starts or ends with /');
  if (name === '.capsync' || name.startsWith('.capsync/')) fail('names under .capsync/ are reserved');
  for (const segment of name.split('/')) {
    if (segment === '') fail('contains an empty path segment');
    if (segment === '.' || segment === '..') fail('contains a . or .. segment');
  }
  return name;
}

/**
 * Extracts and validates the document name from a WebSocket request path such as
 * "/my-doc?token=..." (y-websocket connects to `${serverUrl}/${room}`). Percent-escapes are
 * decoded; a malformed escape is an invalid name.
 */
export function docNameFromPath(pathAndQuery: string): string {
  const path = pathAndQuery.split('?')[0] ?? '';
  let decoded: string;
  try {
    decoded = decodeURIComponent(path.replace(/^\//, ''));
  } catch (err) {
    throw new ProtocolError('invalid-doc-name', 'invalid document name: malformed percent-escape', { cause: err });
  }
  return validateDocName(decoded);
}
