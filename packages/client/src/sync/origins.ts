/**
 * Transaction origins, so the update handler knows where a change came from and therefore
 * where it must go: local edits go to storage, the relay and other tabs; relay updates go to
 * storage only; other tabs' updates go to storage (in case that tab dies before saving) only.
 */
/** Changes that came from the relay (go to storage only). */
export const FROM_RELAY = Symbol('capsync:relay');
export const CROSS_TAB_ORIGIN = Symbol('capsync:cross-tab');
export const STORAGE_ORIGIN = Symbol('capsync:storage');
