/**
 * How long one small synchronous write takes on the file system the relays and etcd members
 * keep their data on (the temp directory): both commit every grant with an fsync, so this is a
 * floor under their latency.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LatencySamples } from '../stats.js';

export interface FsyncProbe {
  dir: string;
  samples: number;
  p50Ms: number;
  p99Ms: number;
}

export function probeFsync(samples = 300): FsyncProbe {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-bench-fsync-'));
  const lat = new LatencySamples();
  const block = Buffer.alloc(4096, 7);
  const fd = fs.openSync(path.join(dir, 'probe'), 'w');
  try {
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      fs.writeSync(fd, block, 0, block.length, (i % 16) * block.length);
      fs.fdatasyncSync(fd);
      lat.add(Math.round((performance.now() - t0) * 1000));
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { dir: os.tmpdir(), samples, p50Ms: lat.percentileMs(50), p99Ms: lat.percentileMs(99) };
}
