/** Longest delay a Node timer takes (about 24.8 days); longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `onExpired` once the wall clock passes `expiresAt` (ms since epoch), at once if it
 * already has. A connection's credential (JWT `exp`) may outlive a timer's range, hence the
 * re-arming. The timer does not keep the process alive. Returns the function that cancels it.
 */
export function onCredentialExpiry(expiresAt: number, onExpired: () => void): () => void {
  let timer: NodeJS.Timeout | null = null;
  const arm = (): void => {
    const remaining = expiresAt - Date.now();
    if (remaining <= 0) {
      timer = null;
      onExpired();
      return;
    }
    timer = setTimeout(arm, Math.min(remaining, MAX_TIMER_MS));
    timer.unref();
  };
  arm();
  return () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
}
