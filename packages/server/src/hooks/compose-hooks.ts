import type { AwarenessEvent, AwarenessVerdict, HookName, RelayHooks } from './relay-hooks.js';

/**
 * One RelayHooks that calls each of `all` in turn (awaiting each) for every hook any of them
 * has. The relay's own hook users (webhooks) go first, so a slow hook of the app delays only
 * that document's next call, as the hooks' contract allows. `onAwareness` is synchronous (see
 * RelayHooks): composed without awaiting, each seeing the state as the one before left it; the
 * first that drops it decides.
 */
export function composeHooks(...all: (RelayHooks | undefined)[]): RelayHooks | undefined {
  const present = all.filter((h): h is RelayHooks => h !== undefined);
  if (present.length <= 1) return present[0];
  const names = new Set(present.flatMap((h) => Object.keys(h) as HookName[]).filter((n) => present.some((h) => typeof h[n] === 'function')));
  const composed: Record<string, (event: unknown) => Promise<void>> = {};
  for (const name of names) {
    if (name === 'onAwareness') {
      composed[name] = composeAwareness(present) as never;
      continue;
    }
    composed[name] = async (event: unknown) => {
      for (const h of present) {
        const hook = h[name] as ((e: unknown) => unknown) | undefined;
        if (typeof hook === 'function') await hook.call(h, event);
      }
    };
  }
  return composed as RelayHooks;
}

/** `onAwareness` of each in turn, synchronously (a promise is handed back as is: the relay does not wait for it). */
function composeAwareness(present: RelayHooks[]): (event: AwarenessEvent) => AwarenessVerdict {
  return (event) => {
    let verdict: AwarenessVerdict;
    let current = event;
    for (const h of present) {
      if (typeof h.onAwareness !== 'function') continue;
      const v: unknown = h.onAwareness(current);
      if (v === undefined) continue;
      if (v === false || typeof (v as PromiseLike<unknown>).then === 'function') return v as AwarenessVerdict;
      verdict = v as AwarenessVerdict;
      current = { ...current, state: v };
    }
    return verdict;
  };
}
