import type { EventEmitter } from 'node:events';

/**
 * Resolves when `check()` returns a value other than undefined/false, re-checking each time
 * `emitter` emits `event`. Rejects after `timeoutMs` with `what` in the message. No polling.
 */
export function waitForEvent<T>(
  emitter: EventEmitter,
  event: string,
  check: () => T | undefined | false,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const first = check();
  if (first !== undefined && first !== false) return Promise.resolve(first);
  return new Promise((resolve, reject) => {
    const onEvent = () => {
      let value: T | undefined | false;
      try {
        value = check();
      } catch (err) {
        cleanup();
        reject(err);
        return;
      }
      if (value !== undefined && value !== false) {
        cleanup();
        resolve(value);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off(event, onEvent);
    };
    emitter.on(event, onEvent);
  });
}

/** Rejects `promise` if it does not settle within `timeoutMs`. */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
    }),
  ]);
}
