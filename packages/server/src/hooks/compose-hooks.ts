import type { HookName, RelayHooks } from './relay-hooks.js';

/**
 * One RelayHooks that calls each of `all` in turn (awaiting each) for every hook any of them
 * has. The relay's own hook users (webhooks) go first, so a slow hook of the app delays only
 * that document's next call, as the hooks' contract allows.
 */
export function composeHooks(...all: (RelayHooks | undefined)[]): RelayHooks | undefined {
  const present = all.filter((h): h is RelayHooks => h !== undefined);
  if (present.length <= 1) return present[0];
  const names = new Set(present.flatMap((h) => Object.keys(h) as HookName[]).filter((n) => present.some((h) => typeof h[n] === 'function')));
  const composed: Record<string, (event: unknown) => Promise<void>> = {};
  for (const name of names) {
    composed[name] = async (event: unknown) => {
      for (const h of present) {
        const hook = h[name] as ((e: unknown) => unknown) | undefined;
        if (typeof hook === 'function') await hook.call(h, event);
      }
    };
  }
  return composed as RelayHooks;
}
