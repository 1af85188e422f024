/**
 * @capsync/client — the browser-first client (offline-first IndexedDB replica, resilient
 * sync, durability status). This package is intentionally thin until the client issue lands;
 * for now it re-exports the protocol pieces a client needs.
 */
export {
  PROTOCOL_VERSION,
  CloseCode,
  UnavailableError,
  CapsyncError,
  encodeMessage,
  decodeMessage,
  type Message,
} from '@capsync/core';
