/**
 * Open-loop pacing: a 1 ms timer computes how many sends are due since the start
 * (rate x elapsed) and makes them, so a late tick catches up instead of lowering the
 * offered load, and no per-send sleep drifts.
 */
const TICK_MS = 1;

/**
 * Calls `send(n)` for n = 0, 1, 2... at `ratePerSec` on average for `durationMs`, and
 * resolves with the number of sends once the time is up.
 */
export function pace(ratePerSec: number, durationMs: number, send: (n: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let sent = 0;
    const timer = setInterval(() => {
      try {
        const elapsed = Math.min(performance.now() - start, durationMs);
        const due = Math.floor((elapsed * ratePerSec) / 1000);
        while (sent < due) send(sent++);
        if (elapsed >= durationMs) {
          clearInterval(timer);
          resolve(sent);
        }
      } catch (err) {
        clearInterval(timer);
        reject(err as Error);
      }
    }, TICK_MS);
  });
}
