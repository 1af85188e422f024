import type { NetworkStatus } from '@capsync/core';

/** The browser's online/offline events; undefined outside a browser window. */
export function browserNetwork(): NetworkStatus | undefined {
  const w = globalThis as {
    window?: unknown;
    navigator?: { onLine?: boolean };
    addEventListener?: (type: string, fn: () => void) => void;
    removeEventListener?: (type: string, fn: () => void) => void;
  };
  if (typeof w.addEventListener !== 'function' || typeof w.window === 'undefined') return undefined;
  return {
    offline: w.navigator?.onLine === false,
    watch(online, offline) {
      w.addEventListener!('online', online);
      w.addEventListener!('offline', offline);
      return () => {
        w.removeEventListener?.('online', online);
        w.removeEventListener?.('offline', offline);
      };
    },
  };
}
