/**
 * Preloaded (`--import`) into a relay started by the lock benchmark: when the bench goes
 * away, by any means (its IPC channel closes), the relay shuts down as on SIGTERM, is gone for
 * good a few seconds later, and its temporary data directory (BENCH_LOCKS_DATA_DIR) goes with
 * it. Nothing of the relay itself is changed.
 */
import fs from 'node:fs';

process.on('disconnect', () => {
  const dataDir = process.env['BENCH_LOCKS_DATA_DIR'];
  if (dataDir) process.on('exit', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  process.kill(process.pid, 'SIGTERM');
  setTimeout(() => process.exit(1), 5_000).unref();
});
