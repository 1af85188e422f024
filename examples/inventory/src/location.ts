/**
 * What the page's address says: which store to open and which relay to talk to.
 */

const DEFAULT_STORE = 'demo-store';

/** `?store=name`, or 'demo-store'. */
export function storeNameFromLocation(loc: Location = location): string {
  return new URLSearchParams(loc.search).get('store')?.trim() || DEFAULT_STORE;
}

/**
 * The relay's WebSocket URL: `?relay=ws://host:port` if given; otherwise the relay that served
 * this page (the built app is served by the relay itself, `--static-dir`), except under
 * `vite dev`, whose server is not a relay: there a local relay on port 4000.
 */
export function relayUrlFromLocation(loc: Location = location): string {
  const given = new URLSearchParams(loc.search).get('relay');
  if (given) return given;
  if (import.meta.env.DEV) return 'ws://localhost:4000';
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}`;
}
