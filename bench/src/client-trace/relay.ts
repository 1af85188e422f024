/** An in-process relay on port 0 with its own temporary data directory. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRelay, type RelayHandle } from '@capsync/server';

export type RelayStorage = 'sqlite' | 'memory';

export interface BenchRelay {
  handle: RelayHandle;
  url: string;
  httpUrl: string;
  close(): Promise<void>;
}

export async function startRelay(storage: RelayStorage, staticDir?: string): Promise<BenchRelay> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-client-trace-'));
  let handle: RelayHandle;
  try {
    handle = await createRelay({ port: 0, storage, dataDir, ...(staticDir ? { staticDir } : {}) });
  } catch (err) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    handle,
    url: handle.url,
    httpUrl: handle.httpUrl,
    close: async () => {
      await handle.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
