/**
 * What the page's URL says: which document to edit and which relay to talk to.
 */

const DEFAULT_DOC = 'welcome';

/** `#notes`, `?doc=notes`, or 'welcome'. The hash wins so links can be shared by fragment alone. */
export function docNameFromLocation(loc: Location = location): string {
  const fromHash = safeDecode(loc.hash.replace(/^#/, '')).trim();
  if (fromHash) return fromHash;
  const fromQuery = new URLSearchParams(loc.search).get('doc')?.trim();
  return fromQuery || DEFAULT_DOC;
}

/** A hand-typed hash may hold a stray '%'; use it as written rather than fail to open. */
function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * The relay's WebSocket URL. The built page is served by the relay itself (`--static-dir`), so
 * the relay is wherever the page came from. Under `vite dev` the page comes from vite's server
 * instead, so there `?relay=ws://…` picks the relay (default: a local `npm start` relay).
 */
export function relayUrlFromLocation(loc: Location = location): string {
  if (import.meta.env.DEV) {
    return new URLSearchParams(loc.search).get('relay') ?? 'ws://localhost:4000';
  }
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}`;
}
