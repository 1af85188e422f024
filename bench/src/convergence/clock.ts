/**
 * One clock for the bench process and the proxy process: wall-clock milliseconds with the
 * sub-millisecond resolution of the monotonic clock (performance.timeOrigin is taken from
 * the system clock when each process starts, so both processes' readings are comparable).
 */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}
